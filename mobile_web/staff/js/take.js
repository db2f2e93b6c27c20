// Taking a payment from what the customer shows: a pay code on their phone (flow (b),
// docs/payments.md) or their card, scanned or its number typed (docs/cards.md). The till keys
// the amount; a pay code is paid at once; for a card the device goes to the customer, who types
// the PIN on a pad that shows only dots. A wrong PIN says how many tries are left; a locked card
// sends the customer to the city counter. The card's answer carries a receipt: what the card
// has left and its nearest expiry.
//
// Each payment keeps its Idempotency-Key until a definite answer (a 2xx, or a refusal other than
// request_in_progress): a cut connection shows "send again", which sends the same key and body.
import { Refused, Unreachable, newKey, post } from "../../app/js/api.js";
import { button, errorLine, h, link, setError, show } from "../../app/js/dom.js";
import { day, money, t } from "../../app/js/i18n.js";
import { classify } from "../../app/js/qr.js";
import { startCamera, viewfinder } from "./camera.js";
import {
  Keypad,
  amountKeypad,
  amountOutput,
  beep,
  defaultType,
  explain,
  go,
  shopName,
  typeChoice,
} from "./common.js";

const MERCHANT = "/api/v1/merchant";

// --- Scan ----------------------------------------------------------------------------------------

export function takeScreen() {
  show("take", () => [
    h("h1", {}, t().takeTitle),
    h("p", {}, t().takeHelp),
    viewfinder(),
    h("p", { id: "scan-status", role: "status" }, t().cameraStarting),
    errorLine(null),
    link("type-card", t().typeCard, "#/card"),
    link("cancel", t().cancel, "#/home"),
  ]);
  startCamera((text) => {
    const code = classify(text);
    if (code && code.kind === "pay_code") return amountScreen({ kind: "pay_code", token: code.token });
    if (code && code.kind === "card") return amountScreen({ kind: "card", card_qr: code.token });
    return notOurs();
  });
}

function notOurs() {
  show("not-ours", () => [
    h("h1", {}, t().notOursTitle),
    h("p", { class: "lead" }, t().notOursHelp),
    button("scan-again", t().scanAgain, () => go("#/take")),
    link("done", t().done, "#/home"),
  ]);
}

export function cardNumberScreen() {
  const submit = (event) => {
    event.preventDefault();
    const digits = document.getElementById("card-number").value.replace(/[\s-]/g, "");
    if (!/^[0-9]{16}$/.test(digits)) return setError(t().cardNumberBad);
    return amountScreen({ kind: "card", card_number: digits, last4: digits.slice(-4) });
  };
  show("card-number", () => [
    h("h1", {}, t().cardNumberTitle),
    h(
      "form",
      { onsubmit: submit, novalidate: true },
      h("label", { for: "card-number" }, t().cardNumberLabel),
      h("input", {
        id: "card-number",
        name: "card-number",
        inputmode: "numeric",
        autocomplete: "off",
        spellcheck: "false",
        "aria-describedby": "card-number-hint",
      }),
      h("p", { id: "card-number-hint", class: "hint" }, t().cardNumberHint),
      errorLine(null),
      h("button", { id: "card-next", type: "submit", class: "button primary" }, t().next),
    ),
    link("cancel", t().cancel, "#/take"),
  ]);
}

// --- The amount ---------------------------------------------------------------------------------

function amountScreen(sale) {
  const pad = amountKeypad();
  let pointType = defaultType();
  const next = () => {
    if (pad.amount < 1) return setError(t().amountHelp);
    // The same sale sent again keeps its key (a cut connection); another amount is another sale.
    if (sale.amount !== pad.amount || sale.point_type !== pointType) sale.key = null;
    sale.amount = pad.amount;
    sale.point_type = pointType;
    if (sale.kind === "pay_code") return payByCode(sale);
    return pinScreen(sale);
  };
  show("take-amount", () => [
    h("h1", {}, t().takeAmountTitle),
    h("p", { id: "taking-by", class: "lead" }, sale.kind === "pay_code" ? t().byPayCode : t().byCard(sale.last4)),
    h("p", {}, t().takeAmountHelp),
    amountOutput(pad),
    pad.element(),
    typeChoice(pointType, (code) => {
      pointType = code;
    }),
    errorLine(null),
    h("div", { id: "retry-slot" }),
    button("take-next", sale.kind === "pay_code" ? t().takePay : t().toPin, next),
    link("cancel", t().cancel, "#/home"),
  ]);
}

// --- Paying -------------------------------------------------------------------------------------

let sending = false;

// Sends `body` under the sale's key (made at the first send, kept until a definite answer).
async function send(sale, path, body, { pressed, label, again }) {
  if (sending) return null; // a double tap sends nothing more
  sending = true;
  sale.key = sale.key || newKey();
  if (pressed) {
    pressed.disabled = true;
    pressed.textContent = label;
  }
  const slot = document.getElementById("retry-slot");
  if (slot) slot.replaceChildren();
  try {
    const paid = await post(path, body, sale.key);
    sale.key = null;
    return paid;
  } catch (failure) {
    if (failure instanceof Refused && failure.problem.code !== "request_in_progress") sale.key = null;
    if (failure instanceof Unreachable && slot) {
      slot.replaceChildren(button("retry", t().retry, again, "secondary"));
    }
    throw failure;
  } finally {
    sending = false;
  }
}

async function payByCode(sale) {
  const pressed = document.getElementById("take-next");
  const body = { token: sale.token, amount: sale.amount };
  if (sale.point_type) body.point_type = sale.point_type;
  try {
    const paid = await send(sale, `${MERCHANT}/pay-code-payments`, body, {
      pressed,
      label: t().taking,
      again: () => payByCode(sale),
    });
    if (paid) takenScreen(paid, null);
  } catch (failure) {
    if (pressed) {
      pressed.disabled = false;
      pressed.textContent = t().takePay;
    }
    beep("refused");
    setError(explain(failure));
  }
}

function pinScreen(sale) {
  const drawDots = (digits) => {
    const dots = document.getElementById("pin-dots");
    if (!dots) return;
    dots.replaceChildren(...pinDots(digits.length));
  };
  const pad = new Keypad({ size: 6, leadingZero: true, onChange: drawDots });
  const pay = async () => {
    if (pad.digits.length < 4) return setError(t().pinShort);
    const pressed = document.getElementById("pin-pay");
    const body = { amount: sale.amount, pin: pad.digits };
    if (sale.card_qr) body.card_qr = sale.card_qr;
    else body.card_number = sale.card_number;
    if (sale.point_type) body.point_type = sale.point_type;
    try {
      const paid = await send(sale, `${MERCHANT}/card-payments`, body, {
        pressed,
        label: t().pinChecking,
        again: pay,
      });
      if (paid) takenScreen(paid, paid.receipt);
    } catch (failure) {
      if (pressed) {
        pressed.disabled = false;
        pressed.textContent = t().pinPay;
      }
      const code = failure instanceof Refused ? failure.problem.code : null;
      if (code === "card_locked" || (code === "pin_incorrect" && failure.problem.attempts_left === 0)) {
        beep("refused");
        return lockedScreen();
      }
      // A refusal: the PIN is typed again (never kept); no answer: the same PIN goes again.
      if (failure instanceof Refused) pad.clear();
      beep("refused");
      setError(explain(failure));
    }
  };
  show("pin", () => [
    h("p", { id: "hand-over", class: "staff-line" }, t().handOver),
    h("h1", {}, t().pinTitle),
    h("p", { id: "pin-for", class: "lead" }, t().pinFor(money(sale.amount), shopName())),
    // Above the pad, where the customer looks: how many tries are left.
    errorLine(null),
    h("p", { id: "pin-dots", class: "pin-dots", "aria-live": "polite" }, pinDots(pad.digits.length)),
    pad.element("pin-pad"),
    h("div", { id: "retry-slot" }),
    button("pin-pay", t().pinPay, pay),
    button("pin-cancel", t().pinCancel, () => go("#/home"), "secondary"),
  ]);
}

// Typed digits as dots (never the digits), and how many for screen readers.
function pinDots(count) {
  return [
    h("span", { class: "dots", "aria-hidden": "true" }, count ? "●".repeat(count) : "―"),
    h("span", { class: "visually-hidden" }, t().pinEntered(count)),
  ];
}

function takenScreen(payment, receipt) {
  beep("paid");
  show("taken", () => [
    h("h1", { class: "paid-title" }, h("span", { class: "tick", "aria-hidden": "true" }, "✓"), t().takenTitle),
    h("p", { id: "taken-amount", class: "huge" }, money(payment.amount)),
    receipt &&
      h(
        "ul",
        { id: "receipt", class: "receipt-lines" },
        h("li", {}, t().receiptCard(receipt.card_last4)),
        h("li", { id: "receipt-balance" }, t().receiptBalance(money(receipt.balance))),
        h(
          "li",
          { id: "receipt-expiry" },
          receipt.nearest_expiry && receipt.nearest_expiry.valid_until
            ? t().receiptExpiry(money(receipt.nearest_expiry.amount), day(receipt.nearest_expiry.valid_until))
            : t().receiptNoExpiry,
        ),
      ),
    receipt && h("p", { class: "staff-line" }, t().returnDevice),
    link("next-take", t().nextTake, "#/take"),
    link("done", t().done, "#/home"),
  ]);
}

function lockedScreen() {
  show("locked", () => [
    h("h1", {}, t().lockedTitle),
    h("p", { id: "locked-help", class: "lead", role: "alert" }, t().lockedHelp),
    h("p", { class: "staff-line" }, t().returnDevice),
    link("done", t().done, "#/home"),
  ]);
}
