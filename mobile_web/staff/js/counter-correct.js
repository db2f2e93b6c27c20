// A resident's details corrected (登録内容を直す): name, address number and birth year, the fields
// `PATCH /api/v1/counter/residents/{id}` takes, with the reason (audited). The form starts with the
// current details; "review" shows each field that changes, now and corrected, and only then is
// the correction sent (only the changed fields). An emptied birth year is sent as none; a name
// and an address number cannot be emptied (a resident without an address number may stay
// without one). Not value-moving: no Idempotency-Key.
import { call, get } from "../../app/js/api.js";
import { button, errorLine, h, onScreen, redraw } from "../../app/js/dom.js";
import { go } from "./common.js";
import { desk, field, sentenceOf, sums, table } from "./desk.js";
import { act, reasonField, refuse, state, valueOf, w } from "./counter-kit.js";

const FIELDS = ["name", "address_number", "birth_year"];

// The resident's details as the form holds them (text).
function asTyped(resident) {
  return {
    name: resident.name || "",
    address_number: resident.address_number || "",
    birth_year: resident.birth_year ? String(resident.birth_year) : "",
  };
}

function labelOf(name) {
  return { name: w().name, address_number: w().addressNumber, birth_year: w().birthYearShort }[name];
}

export function correctScreen(residentId) {
  const path = `/api/v1/counter/residents/${encodeURIComponent(residentId)}`;
  let resident = null;
  let failed = null;
  // What was typed ({name, address_number, birth_year, reason}) and, once reviewed, the changes.
  let typed = null;
  let changes = null;
  let screen = null;

  const read = () => ({
    name: valueOf("fix-name"),
    address_number: valueOf("fix-address"),
    birth_year: valueOf("fix-year"),
    reason: valueOf("fix-reason"),
  });

  const review = (event) => {
    event.preventDefault();
    const now = read();
    if (!now.name) return refuse(w().nameEmpty);
    const before = asTyped(resident);
    // An address number may stay empty only if there was none (a self-enrolled resident).
    const addressOk = /^[0-9]{1,20}$/.test(now.address_number) || (!now.address_number && !before.address_number);
    if (!addressOk) return refuse(w().addressShape);
    if (now.birth_year && !/^(18[89][0-9]|19[0-9]{2}|20[0-9]{2}|2100)$/.test(now.birth_year)) return refuse(w().yearShape);
    if (!now.reason) return refuse(w().reasonMissing);
    const changed = FIELDS.filter((name) => now[name] !== before[name]);
    if (!changed.length) return refuse(w().nothingChanged);
    typed = now;
    changes = changed;
    redraw(screen);
    document.getElementById("fix-go")?.focus();
    return undefined;
  };

  const send = async () => {
    const body = { reason: typed.reason };
    for (const name of changes) {
      const value = typed[name];
      body[name] = name === "birth_year" ? (value ? Number(value) : null) : value;
    }
    const made = await act("fix-go", () => call("PATCH", path, { body }));
    if (!made) return;
    state.done = () => w().corrected;
    go(`#/resident/${encodeURIComponent(residentId)}`);
  };

  const back = () => {
    changes = null;
    redraw(screen);
    document.getElementById("fix-name")?.focus();
  };

  const shown = (value) => value || w().emptyValue;

  const form = () => {
    const values = typed || asTyped(resident);
    const text = (id, value, attributes) => h("input", { id, type: "text", autocomplete: "off", value, ...attributes });
    return h(
      "form",
      { id: "correct-form", class: "act-form", onsubmit: review, novalidate: true },
      h("p", {}, w().correctLead),
      field("fix-name", w().name, text("fix-name", values.name, { maxlength: "200" }), w().nameHint),
      field("fix-address", w().addressNumber, text("fix-address", values.address_number, { inputmode: "numeric", maxlength: "20" }), w().addressHint),
      field("fix-year", w().birthYear, text("fix-year", values.birth_year, { inputmode: "numeric", maxlength: "4" }), w().birthYearHint),
      reasonField("fix-reason", w().correctHint, typed ? typed.reason : ""),
      errorLine(null),
      h(
        "div",
        { class: "row" },
        h("button", { id: "fix-next", type: "submit", class: "button primary" }, w().correctNext),
        h("a", { id: "back-resident", href: `#/resident/${encodeURIComponent(residentId)}`, class: "button link secondary" }, w().backResident),
      ),
    );
  };

  const question = () =>
    h(
      "div",
      { id: "correct-review", class: "act-form", role: "group", "aria-labelledby": "correct-review-title" },
      h("h2", { id: "correct-review-title" }, w().correctReview),
      h("p", { id: "correct-question" }, w().correctQuestion),
      table(
        "correct-changes",
        [
          { label: w().what, value: (name) => labelOf(name) },
          { label: w().before, value: (name) => shown(asTyped(resident)[name]) },
          { label: w().after, value: (name) => h("strong", {}, shown(typed[name])) },
        ],
        changes,
      ),
      sums("correct-reason", [[w().reason, typed.reason]]),
      errorLine(null),
      h(
        "div",
        { class: "row" },
        button("fix-go", w().correctGo, send),
        button("fix-back", w().change, back, "secondary"),
      ),
    );

  const draw = () => [
    h("h1", {}, w().correctTitle),
    resident && h("p", { id: "correct-who", class: "lead" }, resident.name || w().noName),
    !resident && errorLine(failed),
    !resident && !failed && h("p", { class: "quiet", role: "status" }, w().loading),
    resident && (changes ? question() : form()),
  ];
  screen = desk("counter-correct", draw, "home");
  get(path)
    .then((found) => {
      resident = found;
    })
    .catch((failure) => {
      failed = sentenceOf(w, failure);
    })
    .finally(() => {
      if (onScreen(screen)) redraw(screen);
    });
}
