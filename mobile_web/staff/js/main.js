// The staff devices' app: start, hash routes, enrolment, the till's home, settings, and the page
// for roles whose screens come later. The till's screens are in charge.js (payment QR),
// incoming.js (store-QR payments to confirm), take.js (pay codes and cards) and payments.js
// (today's payments, refunds, statements). docs/till-app.md says how it works.
//
// The session is the HttpOnly cookie `points_session` (as the wallet's), started with a one-time
// registration code (POST /api/v1/sessions/device); GET /api/v1/sessions/current says what the
// device is. The session's role chooses the screens: a merchant's till gets the till's screens.
import { Refused, get, post } from "../../app/js/api.js";
import { button, errorLine, h, leave, link, onLeave, redraw, setError, show } from "../../app/js/dom.js";
import { lang, setLang, t } from "../../app/js/i18n.js";
import { startCamera, viewfinder } from "./camera.js";
import { explain, forget, go, remember, shopName, signedOut, state } from "./common.js";
import { chargeScreen, requestScreen } from "./charge.js";
import { incomingScreen } from "./incoming.js";
import { banner, listen, live, liveText, startLive, stopLive } from "./live.js";
import { paymentScreen, paymentsScreen, statementsScreen } from "./payments.js";
import { cardNumberScreen, takeScreen } from "./take.js";
import { deskRoute, drawMenu, isDesk, loadDesk, markCurrent, noDesk } from "./desks.js";

// --- Start and routes --------------------------------------------------------------------------

function start() {
  document.getElementById("lang").addEventListener("click", () => {
    setLang(lang() === "ja" ? "en" : "ja");
    header();
    drawMenu();
    banner();
    redraw();
  });
  addEventListener("online", () => offline(false));
  addEventListener("offline", () => offline(true));
  addEventListener("points:signed-out", () => stopLive());
  addEventListener("hashchange", route);
  // A link to the route on screen (a step drawn over it, "take the next payment") starts it anew.
  document.addEventListener("click", (event) => {
    const anchor = event.target instanceof Element ? event.target.closest('a[href^="#/"]') : null;
    if (anchor && anchor.getAttribute("href") === location.hash) {
      event.preventDefault();
      go(location.hash);
    }
  });
  header();
  offline(!navigator.onLine);
  route();
}

function header() {
  const switcher = document.getElementById("lang");
  switcher.textContent = t().switchLanguage;
  switcher.lang = lang() === "ja" ? "en" : "ja";
  document.getElementById("title").textContent = t().appName;
  document.getElementById("offline").textContent = t().offline;
}

function offline(is) {
  state.offline = is;
  document.getElementById("offline").hidden = !is;
}

const TILL_ROUTES = {
  home: () => homeScreen(),
  charge: () => chargeScreen(),
  qr: (rest) => requestScreen(rest),
  incoming: () => incomingScreen(),
  take: () => takeScreen(),
  card: () => cardNumberScreen(),
  payments: (rest) => (rest ? paymentScreen(rest) : paymentsScreen()),
  statements: () => statementsScreen(),
  settings: () => settingsScreen(),
};

let routing = 0;

async function route() {
  leave();
  banner();
  const mine = ++routing;
  const [, name, rest] = /^#\/([a-z-]*)\/?(.*)$/.exec(location.hash) || [];
  const detail = decodeURIComponent(rest || "");
  if (name === "enrol" || name === "enrol-scan") noDesk();
  if (name === "enrol") return enrolScreen(detail);
  if (name === "enrol-scan") return enrolScanScreen();
  let session;
  try {
    session = await get("/api/v1/sessions/current");
  } catch (failure) {
    if (mine !== routing) return null;
    if (failure instanceof Refused && failure.problem.status === 401) return signedOut(failure.problem);
    return trouble(explain(failure));
  }
  if (mine !== routing) return null;
  if (session.role === "resident") {
    noDesk();
    return residentScreen();
  }
  remember(session);
  // A counter, department, finance or admin PC: its role's screens and menu (desks.js).
  if (isDesk(session.role)) {
    let desk;
    try {
      desk = await loadDesk(session.role);
    } catch {
      return mine === routing ? trouble(t().problems.network) : null;
    }
    if (mine !== routing) return null;
    if (name !== "settings") return deskRoute(desk, session, name, detail);
    markCurrent(desk, "settings");
    return settingsScreen();
  }
  noDesk();
  if (session.role !== "merchant" || !session.till_id) {
    return name === "settings" ? settingsScreen() : laterScreen(session);
  }
  if (!state.settings) {
    try {
      state.settings = await get("/api/v1/merchant/settings");
    } catch (failure) {
      return mine === routing ? trouble(explain(failure)) : null;
    }
    if (mine !== routing) return null;
  }
  startLive();
  const screen = TILL_ROUTES[name] || TILL_ROUTES.home;
  return screen(detail);
}

function trouble(text) {
  show("trouble", () => [
    h("h1", {}, t().appName),
    errorLine(text),
    button("retry", t().retry, () => route()),
  ]);
}

// --- Enrolment ---------------------------------------------------------------------------------

function enrolScreen(code) {
  let notice = state.notice;
  state.notice = null;
  let resident = false;
  let busy = false;
  const enrol = async (typed) => {
    const text = (typed || "").trim().toUpperCase();
    if (text.length < 4) return setError(t().problems.enrolment_code_invalid);
    if (busy) return;
    busy = true;
    const submit = document.getElementById("enrol-code");
    if (submit) {
      submit.disabled = true;
      submit.textContent = t().enrolling;
    }
    try {
      const session = await post("/api/v1/sessions/device", { code: text });
      remember(session);
      state.settings = null;
      // Replace the address with the code in it: back and reload never send the used code.
      location.replace(`${location.pathname}#/home`);
    } catch (failure) {
      busy = false;
      if (submit) {
        submit.disabled = false;
        submit.textContent = t().enrolWithCode;
      }
      const invalid =
        failure instanceof Refused && failure.problem.code === "validation_error";
      setError(invalid ? t().problems.enrolment_code_invalid : explain(failure));
    }
  };
  const submit = (event) => {
    event.preventDefault();
    notice = null;
    enrol(document.getElementById("code").value);
  };
  const screen = show("enrol", () => [
    h("h1", {}, t().enrolTitle),
    // Why the device is here (registration withdrawn or lapsed), or what went wrong.
    errorLine(notice),
    resident && h("p", { id: "resident-here", class: "warning" }, t().residentHere),
    h("p", {}, t().enrolIntro),
    h(
      "form",
      { onsubmit: submit, novalidate: true },
      h("label", { for: "code" }, t().enrolCodeLabel),
      h("input", {
        id: "code",
        name: "code",
        autocomplete: "one-time-code",
        autocapitalize: "characters",
        spellcheck: "false",
        value: code || "",
        "aria-describedby": "code-hint",
      }),
      h("p", { id: "code-hint", class: "hint" }, t().enrolCodeHint),
      h("button", { id: "enrol-code", type: "submit", class: "button primary" }, t().enrolWithCode),
    ),
    link("enrol-scan", t().enrolScan, "#/enrol-scan"),
  ]);
  stopLive();
  // A resident's wallet in this browser: say that registering ends it (one cookie per browser).
  get("/api/v1/sessions/current")
    .then((session) => {
      if (session.role === "resident") {
        resident = true;
        redraw(screen);
      }
    })
    .catch(() => {});
  if (code) enrol(code);
}

// The registration QR holds `<origin>/staff/#/enrol/<code>`: this origin's only.
export function enrolCodeOf(text) {
  const match = /^\s*(https?:\/\/[^/\s]+)\/staff\/#\/enrol\/([A-Za-z0-9-]{4,32})\s*$/.exec(text || "");
  if (!match || match[1].toLowerCase() !== location.origin.toLowerCase()) return null;
  return match[2];
}

function enrolScanScreen() {
  show("enrol-scan", () => [
    h("h1", {}, t().enrolScanTitle),
    h("p", {}, t().enrolScanHelp),
    viewfinder(),
    h("p", { id: "scan-status", role: "status" }, t().cameraStarting),
    errorLine(null),
    link("cancel", t().cancel, "#/enrol"),
  ]);
  startCamera((text, scanner) => {
    const code = enrolCodeOf(text);
    if (code) return location.replace(`${location.pathname}#/enrol/${encodeURIComponent(code)}`);
    setError(t().enrolNotOurs);
    setTimeout(() => scanner.restart(), 1500);
  });
}

// --- Home and the other roles ------------------------------------------------------------------

function homeScreen() {
  const session = state.session;
  let screen = null;
  // The count of payments to confirm follows the events (drawn again only when it changed, so a
  // tap is never lost to a redraw for nothing).
  let shown = live.pending.size;
  onLeave(
    listen(() => {
      if (live.pending.size === shown) return;
      shown = live.pending.size;
      redraw(screen);
    }),
  );
  screen = show("home", () => {
    const count = live.pending.size;
    return [
      h("p", { class: "label" }, t().thisDevice),
      h("h1", { id: "till-of", class: "till-of" }, tillOf(session)),
      h("p", { id: "live-status", class: "quiet", role: "status" }, liveText()),
      h(
        "div",
        { class: "actions" },
        link("go-charge", t().charge, "#/charge"),
        link("go-take", t().take, "#/take"),
        link("go-incoming", count ? t().incomingCount(count) : t().incoming, "#/incoming"),
      ),
      h(
        "nav",
        { class: "more", "aria-label": t().settings },
        link("go-payments", t().payments, "#/payments"),
        link("go-statements", t().statements, "#/statements"),
        link("go-settings", t().settings, "#/settings"),
      ),
    ];
  });
}

// "狛江珈琲店のレジ「レジ1」", the till's name kept on one line if it fits.
function tillOf(session) {
  const parts = t().tillOf("\u0000", shopName()).split("\u0000");
  return [parts[0], h("span", { class: "keep" }, session.till_name), parts.slice(1).join("")];
}

function laterScreen(session) {
  const role = t().roleWord[session.role] || t().roleOther;
  show("later", () => [
    h("h1", {}, t().laterTitle),
    session.label && h("p", { id: "device-label", class: "lead" }, session.label),
    h("p", {}, t().laterHelp(role)),
    link("go-settings", t().settings, "#/settings"),
  ]);
}

function residentScreen() {
  show("resident", () => [
    h("h1", {}, t().residentTitle),
    h("p", {}, t().residentHelp),
    link("to-wallet", t().toWallet, "/app/"),
  ]);
}

// --- Settings ----------------------------------------------------------------------------------

function settingsScreen() {
  let asking = false;
  const choose = (code) => () => {
    setLang(code);
    header();
    drawMenu();
    banner();
    redraw();
  };
  const signOut = async () => {
    try {
      await post("/api/v1/sessions/end", {});
    } catch (failure) {
      if (!(failure instanceof Refused)) return setError(explain(failure));
    }
    stopLive();
    forget();
    noDesk();
    go("#/enrol");
  };
  const ask = (yes) => () => {
    asking = yes;
    redraw();
    const next = document.getElementById(yes ? "signout-keep" : "signout");
    if (next) next.focus();
  };
  show("settings", () => [
    h("h1", {}, t().settingsTitle),
    h(
      "fieldset",
      {},
      h("legend", {}, t().language),
      h("button", { id: "lang-ja", type: "button", class: "button secondary", "aria-pressed": String(lang() === "ja"), onclick: choose("ja") }, "日本語"),
      h("button", { id: "lang-en", type: "button", class: "button secondary", "aria-pressed": String(lang() === "en"), onclick: choose("en") }, "English"),
    ),
    errorLine(null),
    h("p", { class: "hint" }, t().signOutHelp),
    asking
      ? [
          h("p", { id: "signout-question", class: "lead", role: "alert" }, t().signOutSure),
          button("signout-confirm", t().signOutYes, signOut, "danger"),
          button("signout-keep", t().signOutNo, ask(false), "secondary"),
        ]
      : button("signout", t().signOut, ask(true), "danger"),
    link("back", t().back, "#/home"),
  ]);
}

start();
