// The counter PC's screens (市役所窓口): find the resident in front of staff (address number, card
// number, the card's QR read by the scanner, or id), register a resident whose identity was
// checked, the resident's page (counter-resident.js: wallets, cards, the phone's enrolment code,
// printing the card, closing a wallet), their details corrected (counter-correct.js), an exchange
// from the catalog with the resident's PIN (counter-exchange.js), the cards to print, up to ten on
// an A4 sheet (counter-tray.js), and the list of residents with points expiring soon for the
// letters.
import { post } from "../../app/js/api.js";
import { errorLine, h } from "../../app/js/dom.js";
import { go } from "./common.js";
import { desk, field } from "./desk.js";
import { correctScreen } from "./counter-correct.js";
import { exchangeScreen } from "./counter-exchange.js";
import { act, doneLine, refuse, state, takeDone, valueOf, w } from "./counter-kit.js";
import { cardScreen, codeScreen, residentScreen } from "./counter-resident.js";
import { trayCards, trayScreen } from "./counter-tray.js";

export const menu = [
  { route: "home", label: () => w().home },
  { route: "register", label: () => w().register },
  { route: "tray", label: () => w().trayMenu(trayCards().length) },
  { route: "notices", label: () => w().notices },
];

// What the find box holds: a resident id, a card number (16 digits), an address number (digits),
// else the text of a scanned card QR.
export function lookupOf(text) {
  const typed = (text || "").trim();
  if (!typed) return null;
  if (/^[a-z]{3}_[A-Za-z0-9_-]{1,28}$/.test(typed)) return { resident_id: typed };
  const digits = typed.replace(/[\s-]/g, "");
  if (/^[0-9]{16}$/.test(digits)) return { card_number: typed };
  if (/^[0-9]{1,20}$/.test(digits) && !/[\s-]/.test(typed)) return { address_number: typed };
  return { card_qr: typed };
}

function homeScreen() {
  const done = takeDone();
  const find = async (event) => {
    event.preventDefault();
    const lookup = lookupOf(valueOf("find-text"));
    if (!lookup) return refuse(w().findEmpty);
    const found = await act("find-go", () => post("/api/v1/counter/residents/find", lookup));
    if (!found) return undefined;
    state.residents[found.resident.id] = { ...found, cards: null };
    return go(`#/resident/${encodeURIComponent(found.resident.id)}`);
  };
  desk(
    "counter-home",
    () => [
      h("h1", {}, w().homeTitle),
      doneLine(done),
      h("p", { class: "lead" }, w().homeLead),
      h(
        "form",
        { id: "find", class: "row", onsubmit: find, novalidate: true },
        field(
          "find-text",
          w().findLabel,
          h("input", {
            id: "find-text",
            type: "text",
            autocomplete: "off",
            spellcheck: "false",
            class: "find-text",
            "aria-describedby": "find-text-hint",
          }),
        ),
        h("button", { id: "find-go", type: "submit", class: "button primary" }, w().findGo),
      ),
      h("p", { id: "find-text-hint", class: "hint" }, w().findHint),
      errorLine(null),
      h("h2", {}, w().firstSteps),
      h("ol", { class: "steps" }, w().steps.map((step) => h("li", {}, step))),
      h(
        "div",
        { class: "row" },
        h("a", { id: "go-register", href: "#/register", class: "button link" }, w().registerNew),
        h("a", { id: "go-notices", href: "#/notices", class: "button link secondary" }, w().notices),
      ),
    ],
    "home",
  );
  const input = document.getElementById("find-text");
  if (input) input.focus();
}

function registerScreen() {
  const register = async (event) => {
    event.preventDefault();
    const name = valueOf("reg-name");
    const address = valueOf("reg-address");
    const year = valueOf("reg-year");
    if (!name) return refuse(w().nameEmpty);
    if (!/^[0-9]{1,20}$/.test(address)) return refuse(w().addressShape);
    if (year && !/^(18[89][0-9]|19[0-9]{2}|20[0-9]{2}|2100)$/.test(year)) return refuse(w().yearShape);
    if (!document.getElementById("reg-checked").checked) return refuse(w().checkFirst);
    const body = { name, address_number: address };
    if (year) body.birth_year = Number(year);
    const made = await act("reg-go", () => post("/api/v1/counter/residents", body));
    if (!made) return undefined;
    state.done = () => w().registered;
    return go(`#/resident/${encodeURIComponent(made.id)}`);
  };
  desk(
    "counter-register",
    () => [
      h("h1", {}, w().registerTitle),
      h("p", {}, w().registerLead),
      h(
        "form",
        { id: "register", class: "form-grid", onsubmit: register, novalidate: true },
        field("reg-name", w().name, h("input", { id: "reg-name", type: "text", autocomplete: "off", maxlength: "200" }), w().nameHint),
        field(
          "reg-address",
          w().addressNumber,
          h("input", { id: "reg-address", type: "text", inputmode: "numeric", autocomplete: "off", maxlength: "20" }),
          w().addressHint,
        ),
        field(
          "reg-year",
          w().birthYear,
          h("input", { id: "reg-year", type: "text", inputmode: "numeric", autocomplete: "off", maxlength: "4" }),
          w().birthYearHint,
        ),
        h(
          "div",
          { class: "check" },
          h("input", { id: "reg-checked", type: "checkbox" }),
          h("label", { for: "reg-checked" }, w().identityChecked),
        ),
        errorLine(null),
        h("button", { id: "reg-go", type: "submit", class: "button primary" }, w().registerGo),
      ),
    ],
    "register",
  );
}

// The CSV of residents with points expiring soon (mail merge): a link built from the form.
function noticesScreen() {
  const hrefOf = () => {
    const days = Number(valueOf("notice-days") || 60);
    const encoding = valueOf("notice-encoding") || "utf-8";
    const within = Number.isInteger(days) && days >= 1 && days <= 366 ? days : 60;
    return `/api/v1/counter/expiry-notices?within_days=${within}&encoding=${encoding}`;
  };
  const follow = () => {
    const days = Number(valueOf("notice-days"));
    const ok = Number.isInteger(days) && days >= 1 && days <= 366;
    const link = document.getElementById("notices-download");
    const error = document.getElementById("error");
    if (error) {
      error.textContent = ok ? "" : w().daysShape;
      error.className = ok ? "error empty" : "error";
    }
    if (link) {
      link.setAttribute("href", hrefOf());
      link.setAttribute("aria-disabled", ok ? "false" : "true");
      link.classList.toggle("disabled", !ok);
    }
  };
  desk(
    "counter-notices",
    () => [
      h("h1", {}, w().noticesTitle),
      h("p", {}, w().noticesLead),
      h(
        "div",
        { class: "row fields" },
        field(
          "notice-days",
          w().noticeDays,
          h("input", { id: "notice-days", type: "number", min: "1", max: "366", value: "60", inputmode: "numeric", oninput: follow }),
          w().noticeDaysHint,
        ),
        field(
          "notice-encoding",
          w().encoding,
          h(
            "select",
            { id: "notice-encoding", onchange: follow },
            h("option", { value: "utf-8" }, w().utf8),
            h("option", { value: "cp932" }, w().cp932),
          ),
        ),
      ),
      errorLine(null),
      h(
        "a",
        {
          id: "notices-download",
          href: hrefOf(),
          download: "",
          class: "button link",
          onclick: (event) => {
            if (event.currentTarget.getAttribute("aria-disabled") === "true") event.preventDefault();
          },
        },
        w().download,
      ),
      h("p", { class: "hint" }, w().noticesPrivacy),
    ],
    "notices",
  );
}

export const routes = {
  home: homeScreen,
  register: registerScreen,
  notices: noticesScreen,
  resident: (detail) => (detail ? residentScreen(detail) : homeScreen()),
  code: (detail) => codeScreen(detail),
  card: (detail) => cardScreen(detail),
  exchange: (detail) => (detail ? exchangeScreen(detail) : homeScreen()),
  correct: (detail) => (detail ? correctScreen(detail) : homeScreen()),
  tray: trayScreen,
};
