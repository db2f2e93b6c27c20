// The resident's wallet: start, hash routes, and the screens that only read (home, balance by
// expiry date, history, settings). Paying and scanning are in pay.js, exchanging for goods in
// exchange.js. docs/wallet-app.md says how
// the app signs in, what it keeps on the phone and how it behaves offline.
import { Refused, Unreachable, get, post, put } from "./api.js";
import { button, errorLine, h, leave, link, redraw, setError, show } from "./dom.js";
import { day, lang, money, moment, sentence, setLang, t } from "./i18n.js";
import { catalogScreen, exchangedScreen, itemScreen } from "./exchange.js";
import { openCode, payCodeScreen, scanScreen } from "./pay.js";

const LAST = "points.last"; // the last wallets seen, with when: shown offline
export const state = { config: null, wallets: null, at: null, offline: false, notice: null };

// --- Start and routes --------------------------------------------------------------------------

async function start() {
  document.getElementById("lang").addEventListener("click", () => {
    setLang(lang() === "ja" ? "en" : "ja");
    header();
    redraw();
  });
  addEventListener("online", () => offline(false));
  addEventListener("offline", () => offline(true));
  header();
  if ("serviceWorker" in navigator) navigator.serviceWorker.register("sw.js").catch(() => {});
  try {
    state.config = await get("/api/v1/wallet-app");
  } catch {
    state.config = null; // offline: the cached balance is all there is
  }
  addEventListener("hashchange", route);
  route();
}

function header() {
  const switcher = document.getElementById("lang");
  switcher.textContent = t().switchLanguage;
  switcher.lang = lang() === "ja" ? "en" : "ja";
  document.getElementById("title").textContent = t().appName;
  document.getElementById("offline").textContent = t().offline;
}

export function offline(is) {
  state.offline = is;
  document.getElementById("offline").hidden = !is;
}

export function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

async function route() {
  leave();
  const [, name, rest] = /^#\/([a-z-]*)\/?(.*)$/.exec(location.hash) || [];
  switch (name) {
    case "enrol":
      return enrolScreen();
    case "welcome":
      return welcomeScreen();
    case "balance":
      return signedIn(balanceScreen);
    case "history":
      return signedIn(historyScreen);
    case "settings":
      return signedIn(settingsScreen);
    case "scan":
      return signedIn(scanScreen);
    case "paycode":
      return signedIn(payCodeScreen);
    case "exchange":
      return signedIn(() => (rest ? itemScreen(decodeURIComponent(rest)) : catalogScreen()));
    case "exchanged":
      return signedIn(() => exchangedScreen(decodeURIComponent(rest)));
    case "q":
      return signedIn(() => openCode(rest));
    default:
      return signedIn(homeScreen);
  }
}

// Runs `screen` once the wallets are known; with no session, the enrol screen instead.
async function signedIn(screen) {
  try {
    await loadWallets();
  } catch (error) {
    if (error instanceof Refused && error.problem.status === 401) {
      state.notice = error.problem.code === "session_expired" ? t().sessionExpired : null;
      forget();
      return go("#/enrol");
    }
    if (!(error instanceof Unreachable) || !restore()) {
      return showTrouble(error);
    }
    offline(true);
  }
  return screen();
}

export async function loadWallets() {
  state.wallets = await get("/api/v1/me/wallets");
  state.at = new Date().toISOString();
  localStorage.setItem(LAST, JSON.stringify({ wallets: state.wallets, at: state.at }));
  offline(false);
}

function restore() {
  const saved = JSON.parse(localStorage.getItem(LAST) || "null");
  if (!saved) return false;
  state.wallets = saved.wallets;
  state.at = saved.at;
  return true;
}

function forget() {
  localStorage.removeItem(LAST);
  sessionStorage.removeItem("points.exchanged");
  state.wallets = null;
}

function showTrouble(error) {
  const text = error instanceof Refused ? sentence(error.problem) : t().problems.network;
  show("trouble", () => [
    h("h1", {}, t().appName),
    errorLine(text),
    button("retry", t().retry, () => route()),
  ]);
}

// The wallet shown large: the first with points, else the first.
export function mainWallet() {
  const wallets = state.wallets || [];
  return wallets.find((wallet) => wallet.balance > 0) || wallets[0] || null;
}

export function walletName(wallet) {
  return lang() === "ja" ? wallet.name_ja : wallet.name_en;
}

// --- Enrol -------------------------------------------------------------------------------------

function enrolScreen() {
  let error = state.notice;
  state.notice = null;
  const enrolled = () => {
    go("#/welcome");
  };
  const withCode = async (event) => {
    event.preventDefault();
    const code = document.getElementById("code").value.trim().toUpperCase();
    if (!code) return setError(t().problems.enrolment_code_invalid);
    try {
      await post("/api/v1/sessions/code", { code });
      enrolled();
    } catch (failure) {
      error = failure instanceof Refused ? sentence(failure.problem) : t().problems.network;
      if (failure instanceof Refused && failure.problem.code === "validation_error") {
        error = t().problems.enrolment_code_invalid;
      }
      setError(error);
    }
  };
  const selfEnrol = async () => {
    try {
      await post("/api/v1/sessions/self", {});
      enrolled();
    } catch (failure) {
      setError(failure instanceof Refused ? sentence(failure.problem) : t().problems.network);
    }
  };
  const allowSelf = state.config && state.config.self_enrolment;
  show("enrol", () => [
    h("h1", {}, t().enrolTitle),
    h("p", {}, t().enrolIntro),
    h(
      "form",
      { onsubmit: withCode, novalidate: true },
      h("label", { for: "code" }, t().enrolCodeLabel),
      h("input", {
        id: "code",
        name: "code",
        autocomplete: "one-time-code",
        autocapitalize: "characters",
        spellcheck: "false",
        inputmode: "text",
        "aria-describedby": "code-hint",
      }),
      h("p", { id: "code-hint", class: "hint" }, t().enrolCodeHint),
      errorLine(error),
      h("button", { id: "enrol-code", type: "submit", class: "button primary" }, t().enrolWithCode),
    ),
    allowSelf && h("p", {}, t().enrolSelfIntro),
    allowSelf && button("enrol-self", t().enrolSelf, selfEnrol, "secondary"),
  ]);
}

function welcomeScreen() {
  show("welcome", () => [
    h("h1", {}, t().welcomeTitle),
    h("p", { class: "lead" }, t().welcomeLost),
    h("p", {}, t().welcomeShare),
    link("to-home", t().toHome, "#/home"),
  ]);
}

// --- Home --------------------------------------------------------------------------------------

function homeScreen() {
  show("home", () => {
    const wallet = mainWallet();
    const others = (state.wallets || []).filter((other) => other !== wallet);
    // The nearest expiry always; in the warning colour when the city's notice period has begun.
    const soon = wallet && wallet.expiring_soon;
    const nearest = soon || (wallet && wallet.by_expiry.find((line) => line.valid_until));
    return [
      h("h1", { class: "visually-hidden" }, t().homeTitle),
      h(
        "div",
        { class: "balance-card" },
        h("p", { class: "label" }, wallet ? t().balanceOf(walletName(wallet)) : t().balance),
        h("p", { id: "balance", class: "balance" }, money(wallet ? wallet.balance : 0)),
        state.offline && state.at && h("p", { id: "balance-at" }, t().balanceAt(moment(state.at))),
        nearest
          ? h(
              "p",
              { id: "expiring", class: soon ? "expiring soon" : "expiring" },
              t().expiring(money(nearest.amount), day(nearest.valid_until)),
            )
          : h("p", { class: "quiet" }, wallet && wallet.balance > 0 ? t().noExpiring : t().noWallet),
      ),
      others.map((other) =>
        h("p", { class: "other-wallet" }, `${walletName(other)}: ${money(other.balance)}`),
      ),
      h(
        "div",
        { class: "actions" },
        link("go-scan", t().scan, "#/scan"),
        link("go-paycode", t().showPayCode, "#/paycode"),
        link("go-exchange", t().exchange, "#/exchange"),
      ),
      h(
        "nav",
        { class: "more", "aria-label": t().settings },
        link("go-balance", t().byExpiry, "#/balance"),
        link("go-history", t().history, "#/history"),
        link("go-settings", t().settings, "#/settings"),
      ),
    ];
  });
}

// --- Balance by expiry date, and history -------------------------------------------------------

function balanceScreen() {
  show("balance", () => [
    h("h1", {}, t().byExpiryTitle),
    (state.wallets || []).map((wallet) => [
      state.wallets.length > 1 && h("h2", {}, walletName(wallet)),
      h(
        "ul",
        { id: "by-expiry", class: "lines" },
        wallet.by_expiry.map((line) =>
          h(
            "li",
            {},
            h("span", { class: "amount" }, money(line.amount)),
            h("span", {}, line.valid_until ? t().expiresOn(day(line.valid_until)) : t().neverExpires),
          ),
        ),
      ),
      wallet.held > 0 && h("p", { class: "quiet" }, t().held(money(wallet.held))),
    ]),
    link("back", t().back, "#/home"),
  ]);
}

function historyScreen() {
  const wallet = mainWallet();
  const lines = [];
  let next = null;
  let error = null;
  let screen = null;
  const load = async () => {
    if (!wallet) return;
    const query = new URLSearchParams({ limit: "20" });
    if (next) query.set("cursor", next);
    try {
      const page = await get(
        `/api/v1/me/wallets/${encodeURIComponent(wallet.point_type)}/history?${query}`,
      );
      lines.push(...page.items);
      next = page.next_cursor;
      error = null;
    } catch (failure) {
      error = failure instanceof Refused ? sentence(failure.problem) : t().problems.network;
    }
    redraw(screen);
  };
  screen = show("history", () => [
    h("h1", {}, t().historyTitle),
    errorLine(error),
    lines.length === 0 && !error ? h("p", {}, t().historyEmpty) : null,
    h(
      "ul",
      { id: "history", class: "lines" },
      lines.map((line) =>
        h(
          "li",
          { class: line.state },
          h("span", { class: `amount ${line.amount < 0 ? "minus" : "plus"}` }, signed(line.amount)),
          h(
            "span",
            {},
            lang() === "ja" ? line.text_ja : line.text_en,
            t().stateWord[line.state] ? ` (${t().stateWord[line.state]})` : "",
          ),
          h("span", { class: "when" }, moment(line.at)),
        ),
      ),
    ),
    next && button("more", t().more, load, "secondary"),
    link("back", t().back, "#/home"),
  ]);
  load();
}

function signed(amount) {
  return amount > 0 ? `+${money(amount)}` : amount < 0 ? `−${money(-amount)}` : money(0);
}

// --- Settings ----------------------------------------------------------------------------------

async function settingsScreen() {
  let settings = null;
  let message = null;
  try {
    settings = await get("/api/v1/me/payment-settings");
  } catch {
    settings = null; // offline: language and sign-out still work
  }
  const save = async (event) => {
    event.preventDefault();
    const value = document.getElementById("limit").value.trim();
    const limit = /^\d{1,7}$/.test(value) ? Number(value) : NaN;
    if (!(limit >= 1 && limit <= settings.pay_code_limit_max)) {
      return setError(t().limitHelp(settings.pay_code_limit_max));
    }
    try {
      settings = await put("/api/v1/me/payment-settings", { pay_code_limit: limit });
      message = t().limitSaved;
      redraw();
    } catch (failure) {
      setError(failure instanceof Refused ? sentence(failure.problem) : t().problems.network);
    }
  };
  const signOut = async () => {
    try {
      await post("/api/v1/sessions/end", {});
    } catch (failure) {
      if (failure instanceof Unreachable) return setError(t().problems.network);
    }
    forget();
    go("#/enrol");
  };
  let asking = false;
  const ask = () => {
    asking = true;
    redraw();
    document.getElementById("signout-keep").focus();
  };
  const keep = () => {
    asking = false;
    redraw();
  };
  const choose = (code) => () => {
    setLang(code);
    header();
    redraw();
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
    settings &&
      h(
        "form",
        { onsubmit: save, novalidate: true },
        h("label", { for: "limit" }, t().limitLabel),
        h("input", {
          id: "limit",
          name: "limit",
          inputmode: "numeric",
          autocomplete: "off",
          value: settings.pay_code_limit,
          "aria-describedby": "limit-help",
        }),
        h("p", { id: "limit-help", class: "hint" }, t().limitHelp(settings.pay_code_limit_max)),
        message && h("p", { id: "saved", role: "status" }, message),
        h("button", { id: "save-limit", type: "submit", class: "button secondary" }, t().saveLimit),
      ),
    errorLine(null),
    h("p", { class: "hint" }, t().signOutHelp),
    // A second tap to confirm: signing out by mistake means a visit to the counter.
    asking
      ? [
          h("p", { id: "signout-question", class: "lead", role: "alert" }, t().signOutSure),
          button("signout-confirm", t().signOutYes, signOut, "danger"),
          button("signout-keep", t().signOutNo, keep, "secondary"),
        ]
      : button("signout", t().signOut, ask, "danger"),
    link("back", t().back, "#/home"),
  ]);
}

start();
