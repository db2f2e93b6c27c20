// Scanning and paying: the camera, what a scanned code is, the payment QR preview, the store QR
// (shop shown large first, keypad, waiting for the shop), event check-in, and my pay code.
//
// A payment or a check-in makes its Idempotency-Key before it is sent and keeps it (in
// sessionStorage, by the scanned token) until the API gave a definite answer: a retry after a cut
// connection, a reload or a double tap sends the same key, so it never pays twice.
import { Refused, Unreachable, get, newKey, post } from "./api.js";
import {
  button,
  errorLine,
  h,
  link,
  onLeave,
  onScreen,
  redraw,
  setError,
  show,
  svgOf,
} from "./dom.js";
import { lang, money, moment, sentence, t } from "./i18n.js";
import { go, loadWallets, offline, state } from "./main.js";
import { Scanner, classify } from "./qr.js";

const POLL_MS = 2000;

function failureText(failure) {
  if (failure instanceof Refused) return sentence(failure.problem);
  return t().problems.network;
}

function shopName(found) {
  return lang() === "ja" ? found.merchant_name_ja : found.merchant_name_en;
}

// --- Scan --------------------------------------------------------------------------------------

export function scanScreen() {
  let status = t().cameraStarting;
  show("scan", () => [
    h("h1", {}, t().scanTitle),
    h("p", {}, t().scanHelp),
    h(
      "div",
      { class: "viewfinder" },
      h("video", { id: "camera", muted: true, playsinline: true, "aria-hidden": "true" }),
      h("div", { class: "frame", "aria-hidden": "true" }),
    ),
    h("p", { id: "scan-status", role: "status" }, status),
    errorLine(null),
    link("cancel", t().cancel, "#/home"),
  ]);
  const video = document.getElementById("camera");
  const scanner = new Scanner(video, (text) => {
    const code = classify(text, state.config && state.config.qr_prefix);
    if (code) go(`#/q/${code.body}`);
    else notOurs();
  });
  onLeave(() => scanner.stop());
  scanner
    .start()
    .then(() => {
      status = "";
      const line = document.getElementById("scan-status");
      if (line) line.textContent = "";
    })
    .catch((error) => {
      scanner.stop();
      status = "";
      const missing = error && (error.name === "NotFoundError" || !navigator.mediaDevices);
      setError(missing ? t().cameraMissing : t().cameraRefused);
      const line = document.getElementById("scan-status");
      if (line) line.textContent = "";
    });
}

function notOurs() {
  show("not-ours", () => [
    h("h1", {}, t().notOursTitle),
    h("p", { class: "lead" }, t().notOursHelp),
    link("done", t().done, "#/home"),
  ]);
}

// --- A scanned (or camera-opened) code: #/q/<base32> --------------------------------------------

export async function openCode(body) {
  const prefix = state.config ? state.config.qr_prefix : `${location.origin.toUpperCase()}/Q/`;
  const code = classify(prefix + body, prefix);
  if (!code) return notOurs();
  if (code.kind === "event") return checkIn(code.token);
  if (code.kind !== "payment" && code.kind !== "store") return notOurs();
  let found;
  try {
    found = await post("/api/v1/me/payment-previews", { token: code.token });
  } catch (failure) {
    return stopped(failureText(failure));
  }
  if (found.flow === "payment_qr") return previewScreen(code.token, found);
  return storeScreen(code.token, found);
}

// A code that cannot be paid (expired, used, forged…): the sentence and the way home.
function stopped(text) {
  show("stopped", () => [h("h1", {}, t().notOursTitle), errorLine(text), link("done", t().done, "#/home")]);
}

function previewScreen(token, found) {
  const payment = { token, amount: found.amount, point_type: found.point_types[0] };
  show("preview", () => [
    h("h1", {}, t().previewTitle),
    h("p", { class: "label" }, t().shop),
    h("p", { id: "shop", class: "shop" }, shopName(found)),
    h("p", { id: "till", class: "till" }, `${t().till}: ${found.till_name}`),
    h(
      "dl",
      { class: "sums" },
      h("dt", {}, t().amount),
      h("dd", { id: "amount", class: "big" }, money(found.amount)),
      h("dt", {}, t().balanceAfter),
      h("dd", { id: "balance-after" }, money(found.balance_after)),
    ),
    errorLine(null),
    h("div", { id: "retry-slot" }),
    button("pay", t().pay, () => pay(payment)),
    link("cancel", t().cancel, "#/home"),
  ]);
}

function storeScreen(token, found) {
  const balances = found.balances || {};
  let pointType = found.point_types[0];
  const next = () => amountScreen(token, found, pointType);
  show("store", () => [
    h("h1", {}, t().storeTitle),
    h("p", { id: "shop", class: "shop huge" }, shopName(found)),
    h("p", { id: "till", class: "till" }, `${t().till}: ${found.till_name}`),
    h("p", { class: "lead" }, t().storeCheck),
    found.point_types.length > 1 &&
      h(
        "fieldset",
        {},
        h("legend", {}, t().chooseType),
        found.point_types.map((code) =>
          h(
            "label",
            { class: "choice" },
            h("input", {
              type: "radio",
              name: "point-type",
              value: code,
              checked: code === pointType,
              onchange: () => {
                pointType = code;
              },
            }),
            `${code} (${money(balances[code] || 0)})`,
          ),
        ),
      ),
    button("store-ok", t().storeOk, next),
    link("cancel", t().cancel, "#/home"),
  ]);
}

function amountScreen(token, found, pointType) {
  let digits = "";
  const balance = (found.balances || {})[pointType] || 0;
  const press = (key) => () => {
    if (key === "back") digits = digits.slice(0, -1);
    else if (key === "clear") digits = "";
    else if (digits.length < 7 && !(digits === "" && key === "0")) digits += key;
    const shown = document.getElementById("amount");
    shown.textContent = money(Number(digits || 0));
    setError(null);
  };
  const onKey = (event) => {
    if (/^[0-9]$/.test(event.key)) press(event.key)();
    else if (event.key === "Backspace") press("back")();
  };
  document.addEventListener("keydown", onKey);
  onLeave(() => document.removeEventListener("keydown", onKey));
  const nextStep = () => {
    const amount = Number(digits || 0);
    if (amount < 1) return setError(t().amountHelp);
    if (amount > balance) return setError(t().problems.insufficient_balance_with(money(balance)));
    confirmScreen({ token, amount, point_type: pointType }, found);
  };
  const keys = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "clear", "0", "back"];
  show("amount", () => [
    h("h1", {}, t().amountTitle),
    h("p", { id: "shop", class: "shop" }, shopName(found)),
    h("p", {}, t().amountHelp),
    h("output", { id: "amount", class: "big", "aria-live": "polite" }, money(Number(digits || 0))),
    h(
      "div",
      { class: "keypad" },
      keys.map((key) =>
        h(
          "button",
          {
            type: "button",
            class: "key",
            "data-key": key,
            "aria-label": key === "back" ? t().keyBack : key === "clear" ? t().keyClear : null,
            onclick: press(key),
          },
          key === "back" ? "⌫" : key === "clear" ? "C" : key,
        ),
      ),
    ),
    errorLine(null),
    button("amount-next", t().amountNext, nextStep),
    link("cancel", t().cancel, "#/home"),
  ]);
}

function confirmScreen(payment, found) {
  const balance = (found.balances || {})[payment.point_type] || 0;
  show("confirm", () => [
    h("h1", {}, t().confirmTitle),
    h("p", { class: "label" }, t().shop),
    h("p", { id: "shop", class: "shop" }, shopName(found)),
    h("p", { id: "till", class: "till" }, `${t().till}: ${found.till_name}`),
    h(
      "dl",
      { class: "sums" },
      h("dt", {}, t().amount),
      h("dd", { id: "amount", class: "big" }, money(payment.amount)),
      h("dt", {}, t().balanceAfter),
      h("dd", { id: "balance-after" }, money(balance - payment.amount)),
    ),
    errorLine(null),
    h("div", { id: "retry-slot" }),
    button("pay", t().pay, () => pay(payment)),
    link("cancel", t().cancel, "#/home"),
  ]);
}

// --- Paying ------------------------------------------------------------------------------------

let paying = false;

async function pay(payment) {
  if (paying) return; // a double tap sends nothing more
  paying = true;
  const stored = `points.pay.${payment.token}`;
  const key = sessionStorage.getItem(stored) || newKey();
  sessionStorage.setItem(stored, key);
  const payButton = document.getElementById("pay");
  if (payButton) {
    payButton.disabled = true;
    payButton.textContent = t().paying;
  }
  const body = { token: payment.token, amount: payment.amount };
  if (payment.point_type) body.point_type = payment.point_type;
  try {
    const paid = await post("/api/v1/me/payments", body, key);
    sessionStorage.removeItem(stored);
    paying = false;
    return paid.state === "pending" ? waitingScreen(paid) : settled(paid);
  } catch (failure) {
    paying = false;
    if (failure instanceof Refused && failure.problem.code !== "request_in_progress") {
      sessionStorage.removeItem(stored);
    }
    if (failure instanceof Unreachable) offline(!navigator.onLine);
    if (payButton) {
      payButton.disabled = false;
      payButton.textContent = t().pay;
    }
    setError(failureText(failure));
    const slot = document.getElementById("retry-slot");
    if (slot && !(failure instanceof Refused && failure.problem.status < 500)) {
      slot.replaceChildren(button("retry", t().retry, () => pay(payment), "secondary"));
    }
  }
}

function waitingScreen(payment) {
  const screen = show("waiting", () => [
    h("h1", {}, t().waitingTitle),
    h("p", { id: "shop", class: "shop" }, shopName(payment)),
    h("p", { id: "amount", class: "big" }, money(payment.amount)),
    h("div", { class: "spinner", "aria-hidden": "true" }),
    h("p", { class: "lead", role: "status" }, t().waitingHelp),
    errorLine(null),
  ]);
  let timer = null;
  const poll = async () => {
    try {
      const now = await get(`/api/v1/me/payments/${encodeURIComponent(payment.id)}`);
      if (!onScreen(screen)) return;
      if (now.state !== "pending") return settled(now);
      setError(null);
    } catch (failure) {
      setError(failureText(failure));
    }
    timer = setTimeout(poll, POLL_MS);
  };
  timer = setTimeout(poll, POLL_MS);
  onLeave(() => clearTimeout(timer));
}

function settled(payment) {
  loadWallets().catch(() => {});
  if (payment.state === "voided") {
    const timedOut =
      payment.confirm_by && payment.resolved_at && payment.resolved_at >= payment.confirm_by;
    return show("declined", () => [
      h("h1", {}, t().declinedTitle),
      h("p", { id: "shop", class: "shop" }, shopName(payment)),
      h("p", { class: "lead" }, timedOut ? t().timedOutHelp : t().declinedHelp),
      link("done", t().done, "#/home"),
    ]);
  }
  show("paid", () => [
    h("h1", { class: "paid-title" }, h("span", { class: "tick", "aria-hidden": "true" }, "✓"), t().paidTitle),
    h("p", { id: "paid-amount", class: "huge" }, money(payment.amount)),
    h("p", { id: "shop", class: "shop" }, shopName(payment)),
    h("p", { class: "till" }, `${t().till}: ${payment.till_name}`),
    h("p", { id: "paid-at" }, t().paidAt(moment(payment.resolved_at || payment.created_at))),
    h("p", { class: "lead" }, t().paidHelp),
    link("done", t().done, "#/home"),
  ]);
}

// --- Event check-in ----------------------------------------------------------------------------

async function checkIn(token) {
  const stored = `points.checkin.${token}`;
  const key = sessionStorage.getItem(stored) || newKey();
  sessionStorage.setItem(stored, key);
  let done;
  try {
    done = await post("/api/v1/me/check-ins", { token }, key);
    sessionStorage.removeItem(stored);
  } catch (failure) {
    if (failure instanceof Refused) sessionStorage.removeItem(stored);
    return show("checkin-failed", () => [
      h("h1", {}, t().notOursTitle),
      errorLine(failureText(failure)),
      failure instanceof Unreachable && button("retry", t().retry, () => checkIn(token), "secondary"),
      link("done", t().done, "#/home"),
    ]);
  }
  loadWallets().catch(() => {});
  show("checkin", () => [
    h("h1", { class: "paid-title" }, h("span", { class: "tick", "aria-hidden": "true" }, "✓"), t().checkinTitle),
    h("p", { id: "event-name", class: "shop" }, done.event_name),
    h("p", { class: "label" }, t().checkinEarned),
    h("p", { id: "earned", class: "huge" }, money(done.amount)),
    done.replayed && h("p", {}, t().checkinAgain),
    link("done", t().done, "#/home"),
  ]);
}

// --- My pay code -------------------------------------------------------------------------------

const RENEW_BEFORE_S = 10;

export function payCodeScreen() {
  let code = null;
  let error = null;
  let timers = [];
  const stopTimers = () => {
    for (const timer of timers) clearTimeout(timer);
    timers = [];
  };
  onLeave(stopTimers);
  const secondsLeft = () => Math.max(0, Math.round((Date.parse(code.expires_at) - Date.now()) / 1000));
  let screen = null;
  const renew = async () => {
    stopTimers();
    try {
      code = await post("/api/v1/me/pay-codes", {});
      error = null;
    } catch (failure) {
      code = null;
      error = failureText(failure);
    }
    if (!onScreen(screen)) return;
    redraw(screen);
    if (!code) timers.push(setTimeout(renew, 5000));
    else {
      tick();
      timers.push(setTimeout(poll, POLL_MS));
    }
  };
  const tick = () => {
    const left = secondsLeft();
    const line = document.getElementById("countdown");
    if (line) line.textContent = t().payCodeCountdown(Math.max(0, left - RENEW_BEFORE_S));
    if (left <= RENEW_BEFORE_S) return renew();
    timers.push(setTimeout(tick, 1000));
  };
  const poll = async () => {
    try {
      const now = await get(`/api/v1/me/pay-codes/${encodeURIComponent(code.id)}`);
      if (!onScreen(screen)) return;
      if (now.state === "used" && now.payment) {
        stopTimers();
        return settled(now.payment);
      }
    } catch {
      // the countdown goes on; the next poll may reach the server
    }
    timers.push(setTimeout(poll, POLL_MS));
  };
  screen = show("paycode", () => [
    h("h1", {}, t().payCodeTitle),
    h("p", { class: "lead" }, t().payCodeHelp),
    h("div", { id: "paycode-qr", class: "qr", role: "img", "aria-label": t().payCodeTitle }, code ? svgOf(code.svg) : t().payCodeRenewing),
    code && h("p", { id: "countdown", role: "timer" }, t().payCodeCountdown(Math.max(0, secondsLeft() - RENEW_BEFORE_S))),
    code && h("p", {}, t().payCodeLimit(money(code.limit))),
    h("p", { class: "hint" }, t().payCodeBright),
    errorLine(error),
    link("done", t().done, "#/home"),
  ]);
  renew();
}
