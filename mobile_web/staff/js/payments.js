// The shop's payments of today with the day's totals, one payment with its refunds (all, or an
// amount keyed), and the monthly statements to open and print.
//
// A refund keeps its Idempotency-Key (sessionStorage, by payment and amount) until a definite
// answer: a double tap or a retry after a cut connection never refunds twice.
import { Refused, Unreachable, get, newKey, post } from "../../app/js/api.js";
import { button, errorLine, h, link, redraw, setError, show } from "../../app/js/dom.js";
import { money, moment, t } from "../../app/js/i18n.js";
import { amountKeypad, amountOutput, clock, explain, go, shortName, yen } from "./common.js";

const PAYMENTS = "/api/v1/merchant/payments";
const PAGE = 20;

// --- Today -------------------------------------------------------------------------------------

export function paymentsScreen() {
  const items = [];
  let totals = null;
  let next = null;
  let error = null;
  let loaded = false;
  let screen = null;
  const load = async () => {
    const query = new URLSearchParams({ limit: String(PAGE) });
    if (next) query.set("cursor", next);
    try {
      const page = await get(`${PAYMENTS}?${query}`);
      items.push(...page.items);
      totals = page.totals;
      next = page.next_cursor;
      error = null;
    } catch (failure) {
      error = explain(failure);
    }
    loaded = true;
    redraw(screen);
  };
  screen = show("payments", () => [
    h("h1", {}, t().paymentsTitle),
    totals && totalsOf(totals),
    errorLine(error),
    loaded && !error && items.length === 0 && h("p", { id: "payments-empty" }, t().paymentsEmpty),
    h(
      "ul",
      { id: "payments", class: "lines payments" },
      items.map((payment) =>
        h(
          "li",
          { class: payment.state },
          h(
            "a",
            { class: "row-link", href: `#/payments/${encodeURIComponent(payment.id)}`, "data-payment": payment.id },
            h("span", { class: "amount" }, money(payment.amount)),
            " ",
            h(
              "span",
              {},
              `${clock(payment.created_at)} ・ ${t().flowWord[payment.flow] || payment.flow} ・ `,
              t().stateWord[payment.state] || payment.state,
              payment.refunded > 0 ? ` ・ ${t().refundedPart(money(payment.refunded))}` : "",
            ),
          ),
        ),
      ),
    ),
    next && button("more", t().more, load, "secondary"),
    link("go-statements", t().statements, "#/statements"),
    link("done", t().done, "#/home"),
  ]);
  load();
}

function totalsOf(totals) {
  const line = (id, label, value) => [h("dt", {}, label), h("dd", { id }, value)];
  return h(
    "section",
    { class: "totals", "aria-labelledby": "totals-title" },
    h("h2", { id: "totals-title" }, t().totalsTitle),
    h(
      "dl",
      { class: "sums two" },
      line("total-count", t().totalCount, t().count(totals.count)),
      line("total-amount", t().totalAmount, money(totals.amount)),
      line("total-refunded", t().totalRefunded, money(totals.refunded)),
      line("total-net", t().totalNet, money(totals.net)),
      totals.pending > 0 && line("total-pending", t().totalPending, t().count(totals.pending)),
    ),
  );
}

// --- One payment, and refunds ------------------------------------------------------------------

function refundableOf(payment) {
  if (payment.state !== "posted" && payment.state !== "partly_refunded") return 0;
  return payment.amount - payment.refunded;
}

export async function paymentScreen(id) {
  let payment;
  try {
    payment = await get(`${PAYMENTS}/${encodeURIComponent(id)}`);
  } catch (failure) {
    const text = explain(failure);
    return show("payment", () => [h("h1", {}, t().paymentTitle), errorLine(text), link("back", t().back, "#/payments")]);
  }
  const refundable = refundableOf(payment);
  return show("payment", () => [
    h("h1", {}, t().paymentTitle),
    h(
      "dl",
      { class: "sums" },
      h("dt", {}, t().amount),
      h("dd", { id: "payment-amount", class: "big" }, money(payment.amount)),
      h("dt", {}, t().paidWhen),
      h("dd", {}, moment(payment.created_at)),
      h("dt", {}, t().how),
      h("dd", {}, t().flowWord[payment.flow] || payment.flow),
      h("dt", {}, t().stateLabel),
      h("dd", { id: "payment-state" }, t().stateWord[payment.state] || payment.state),
      payment.refunded > 0 && [h("dt", {}, t().refundedLabel), h("dd", { id: "payment-refunded" }, money(payment.refunded))],
      payment.reference && [h("dt", {}, t().reference), h("dd", {}, payment.reference)],
      h("dt", {}, t().customerLabel),
      h("dd", { class: "mono" }, shortName(payment.customer)),
    ),
    refundable > 0
      ? [
          h("p", { id: "refundable" }, t().refundable(money(refundable))),
          button("refund-all", t().refundAll(money(refundable)), () => confirmRefund(payment, refundable), "secondary"),
          button("refund-part", t().refundPart, () => refundAmountScreen(payment, refundable), "secondary"),
        ]
      : payment.refunded < payment.amount && h("p", { class: "quiet" }, t().notRefundable),
    link("back", t().back, "#/payments"),
  ]);
}

function refundAmountScreen(payment, refundable) {
  const pad = amountKeypad();
  const next = () => {
    if (pad.amount < 1) return setError(t().amountHelp);
    if (pad.amount > refundable) return setError(t().problems.refund_exceeds_payment_with(money(refundable)));
    return confirmRefund(payment, pad.amount);
  };
  show("refund-amount", () => [
    h("h1", {}, t().refundAmountTitle),
    h("p", {}, t().refundable(money(refundable))),
    amountOutput(pad),
    pad.element(),
    errorLine(null),
    button("refund-next", t().next, next),
    link("cancel", t().cancel, `#/payments/${encodeURIComponent(payment.id)}`),
  ]);
}

let refunding = false;

function confirmRefund(payment, amount) {
  const doRefund = async () => {
    if (refunding) return; // a double tap sends nothing more
    refunding = true;
    const stored = `points.till.refund.${payment.id}`;
    const saved = JSON.parse(sessionStorage.getItem(stored) || "null");
    const key = saved && saved.amount === amount ? saved.key : newKey();
    sessionStorage.setItem(stored, JSON.stringify({ amount, key }));
    const pressed = document.getElementById("refund-do");
    if (pressed) {
      pressed.disabled = true;
      pressed.textContent = t().refunding;
    }
    const slot = document.getElementById("retry-slot");
    if (slot) slot.replaceChildren();
    try {
      const done = await post(`${PAYMENTS}/${encodeURIComponent(payment.id)}/refunds`, { amount }, key);
      sessionStorage.removeItem(stored);
      refunding = false;
      return refundedScreen(done, amount);
    } catch (failure) {
      refunding = false;
      if (failure instanceof Refused && failure.problem.code !== "request_in_progress") {
        sessionStorage.removeItem(stored);
      }
      if (pressed) {
        pressed.disabled = false;
        pressed.textContent = t().refundDo(money(amount));
      }
      setError(explain(failure));
      if (failure instanceof Unreachable && slot) {
        slot.replaceChildren(button("retry", t().retry, doRefund, "secondary"));
      }
    }
    return null;
  };
  show("refund-confirm", () => [
    h("h1", {}, t().refundConfirmTitle),
    h("p", { id: "refund-amount", class: "huge" }, money(amount)),
    h("p", { class: "lead" }, t().refundConfirmHelp),
    errorLine(null),
    h("div", { id: "retry-slot" }),
    button("refund-do", t().refundDo(money(amount)), doRefund),
    link("cancel", t().cancel, `#/payments/${encodeURIComponent(payment.id)}`),
  ]);
}

function refundedScreen(payment, amount) {
  show("refunded", () => [
    h("h1", { class: "paid-title" }, h("span", { class: "tick", "aria-hidden": "true" }, "✓"), t().refundedTitle),
    h("p", { id: "refunded-amount", class: "huge" }, money(amount)),
    h("p", { class: "lead" }, t().refundedHelp(money(amount))),
    h("p", { id: "payment-state" }, `${t().stateLabel}: ${t().stateWord[payment.state] || payment.state}`),
    button("to-payments", t().toPayments, () => go("#/payments")),
    link("done", t().done, "#/home"),
  ]);
}

// --- Statements --------------------------------------------------------------------------------

export function statementsScreen() {
  let items = [];
  let error = null;
  let loaded = false;
  let screen = null;
  const several = () => new Set(items.map((item) => item.point_type)).size > 1;
  screen = show("statements", () => [
    h("h1", {}, t().statementsTitle),
    h("p", {}, t().statementsHelp),
    errorLine(error),
    loaded && !error && items.length === 0 && h("p", { id: "statements-empty", class: "lead" }, t().statementsEmpty),
    h(
      "ul",
      { id: "statements", class: "statements" },
      items.map((item) => {
        const [year, month] = item.period.split("-").map(Number);
        const base = `/api/v1/merchant/statements/${encodeURIComponent(item.id)}`;
        return h(
          "li",
          { class: "statement", "data-statement": item.id },
          h("h2", {}, t().period(year, month), several() ? ` (${item.point_type})` : ""),
          h("p", {}, t().settled(money(item.settle_points))),
          h("p", { class: "lead" }, t().yenToPay(yen(item.yen_to_pay))),
          h(
            "a",
            {
              class: "button link",
              href: `${base}/print`,
              target: "_blank",
              rel: "noopener",
              "aria-label": `${t().openStatement} ${t().period(year, month)}`,
            },
            t().openStatement,
          ),
          h(
            "a",
            { class: "button link", href: `${base}.csv`, download: "", "aria-label": `${t().statementCsv} ${t().period(year, month)}` },
            t().statementCsv,
          ),
        );
      }),
    ),
    link("done", t().done, "#/home"),
  ]);
  get("/api/v1/merchant/statements?limit=24")
    .then((page) => {
      items = page.items;
    })
    .catch((failure) => {
      error = explain(failure);
    })
    .finally(() => {
      loaded = true;
      redraw(screen);
    });
}
