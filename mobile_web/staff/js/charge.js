// The payment QR (docs/payments.md, flow (a)): the till keys the amount, shows the QR large, and
// the screen turns "paid" by itself when the shop's events say a payment QR was paid (the request
// is read again to be sure it is this one), or "expired" when its time is up, with a button for a
// new one of the same amount. A payment QR moves no points by itself: making one needs no
// Idempotency-Key (a double tap is still stopped: one request at a time).
import { Refused, get, post } from "../../app/js/api.js";
import { button, errorLine, h, link, onLeave, onScreen, setError, show, svgOf } from "../../app/js/dom.js";
import { money, moment, t } from "../../app/js/i18n.js";
import {
  amountKeypad,
  amountOutput,
  beep,
  defaultType,
  explain,
  go,
  typeChoice,
} from "./common.js";
import { listen, live } from "./live.js";

const REQUESTS = "/api/v1/merchant/payment-requests";
// While the events do not arrive live, the QR's request is read this often.
const CHECK_MS = 3000;

let made = null; // the request just made: its screen needs no second read
let making = false;

export function chargeScreen() {
  const pad = amountKeypad();
  let pointType = defaultType();
  const make = () => {
    if (pad.amount < 1) return setError(t().amountHelp);
    return makeRequest(pad.amount, pointType);
  };
  show("charge", () => [
    h("h1", {}, t().chargeTitle),
    h("p", {}, t().chargeHelp),
    amountOutput(pad),
    pad.element(),
    typeChoice(pointType, (code) => {
      pointType = code;
    }),
    errorLine(null),
    button("make-qr", t().chargeMake, make),
    link("cancel", t().cancel, "#/home"),
  ]);
}

async function makeRequest(amount, pointType) {
  if (making) return;
  making = true;
  const pressed = document.getElementById("make-qr") || document.getElementById("again");
  if (pressed) {
    pressed.disabled = true;
    pressed.textContent = t().making;
  }
  const body = { amount };
  if (pointType) body.point_type = pointType;
  try {
    made = await post(REQUESTS, body);
    making = false;
    go(`#/qr/${made.id}`);
  } catch (failure) {
    making = false;
    if (pressed) {
      pressed.disabled = false;
      pressed.textContent = pressed.id === "again" ? t().again : t().chargeMake;
    }
    setError(explain(failure));
  }
}

export async function requestScreen(id) {
  let request = made && made.id === id ? made : null;
  made = null;
  if (!request) {
    try {
      request = await get(`${REQUESTS}/${encodeURIComponent(id)}`);
    } catch (failure) {
      const text = explain(failure);
      return show("qr-trouble", () => [h("h1", {}, t().chargeTitle), errorLine(text), link("done", t().done, "#/home")]);
    }
  }
  return settle(request, false);
}

// The screen for the request's state; `news`: the state changed while the till watched.
function settle(request, news) {
  if (request.state === "paid") return paidScreen(request, news);
  if (request.state === "expired") return expiredScreen(request);
  if (request.state === "cancelled") return cancelledScreen(request);
  return qrScreen(request);
}

function secondsLeft(request) {
  return Math.max(0, Math.ceil((Date.parse(request.expires_at) - Date.now()) / 1000));
}

function qrScreen(request) {
  let screen = null;
  let checking = false;
  let cancelling = false;
  let timers = [];
  const stop = () => {
    for (const timer of timers) clearTimeout(timer);
    timers = [];
  };
  onLeave(stop);
  const check = async () => {
    if (checking) return;
    checking = true;
    try {
      const now = await get(`${REQUESTS}/${encodeURIComponent(request.id)}`);
      if (!onScreen(screen)) return;
      if (now.state !== "open") {
        stop();
        settle(now, true);
      }
    } catch (failure) {
      if (onScreen(screen)) setError(explain(failure));
    } finally {
      checking = false;
    }
  };
  const tick = () => {
    const left = secondsLeft(request);
    const line = document.getElementById("countdown");
    if (line) line.textContent = t().qrCountdown(left);
    if (left <= 0) check();
    timers.push(setTimeout(tick, 1000));
  };
  const backstop = () => {
    if (live.mode !== "stream") check();
    timers.push(setTimeout(backstop, CHECK_MS));
  };
  onLeave(
    listen((event) => {
      if (event.payment.flow === "payment_qr" && event.kind === "posted") check();
    }),
  );
  const cancel = async () => {
    if (cancelling) return;
    cancelling = true;
    const pressed = document.getElementById("qr-cancel");
    if (pressed) {
      pressed.disabled = true;
      pressed.textContent = t().cancelling;
    }
    try {
      const now = await post(`${REQUESTS}/${encodeURIComponent(request.id)}/cancel`, {});
      stop();
      settle(now, true);
    } catch (failure) {
      cancelling = false;
      if (pressed) {
        pressed.disabled = false;
        pressed.textContent = t().qrCancel;
      }
      setError(explain(failure));
      // Paid meanwhile: the read shows it.
      if (failure instanceof Refused && failure.problem.code === "payment_request_paid") check();
    }
  };
  screen = show("qr", () => [
    h("h1", {}, t().qrTitle),
    h("p", { id: "qr-amount", class: "huge centre" }, money(request.amount)),
    h(
      "div",
      { id: "payment-qr", class: "qr qr-large", role: "img", "aria-label": `${t().chargeTitle}: ${money(request.amount)}` },
      svgOf(request.svg),
    ),
    h("p", { id: "countdown", role: "timer" }, t().qrCountdown(secondsLeft(request))),
    h("p", { id: "qr-waiting", class: "lead centre", role: "status" }, t().qrWaiting),
    errorLine(null),
    button("qr-cancel", t().qrCancel, cancel, "danger"),
  ]);
  timers.push(setTimeout(tick, 1000));
  timers.push(setTimeout(backstop, CHECK_MS));
}

function paidScreen(request, news) {
  if (news) beep("paid");
  const payment = request.payment;
  show("paid", () => [
    h("h1", { class: "paid-title" }, h("span", { class: "tick", "aria-hidden": "true" }, "✓"), t().paidTitle),
    h("p", { id: "paid-amount", class: "huge" }, money(request.amount)),
    payment && h("p", { id: "paid-at" }, t().paidAt(moment(payment.resolved_at || payment.created_at))),
    link("next-charge", t().nextCharge, "#/charge"),
    link("done", t().done, "#/home"),
  ]);
}

function expiredScreen(request) {
  show("expired", () => [
    h("h1", {}, t().expiredTitle),
    h("p", { id: "expired-amount", class: "huge" }, money(request.amount)),
    h("p", { class: "lead" }, t().expiredHelp),
    errorLine(null),
    button("again", t().again, () => makeRequest(request.amount, request.point_type)),
    link("done", t().done, "#/home"),
  ]);
}

function cancelledScreen(request) {
  show("cancelled", () => [
    h("h1", {}, t().cancelledTitle),
    h("p", { id: "cancelled-amount", class: "huge" }, money(request.amount)),
    h("p", { class: "lead" }, t().cancelledHelp),
    link("next-charge", t().nextCharge, "#/charge"),
    link("done", t().done, "#/home"),
  ]);
}
