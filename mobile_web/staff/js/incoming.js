// Store-QR payments awaiting the shop (docs/payments.md, flow (c)): each with its amount, time,
// the shop's pseudonym of the customer and the time left, to confirm (posted) or decline (voided,
// the points stay with the customer). The list follows the shop's events (live.js): a new one
// plays a sound there, on any screen.
//
// A double tap never confirms twice: one request at a time per payment, and its Idempotency-Key
// is made before the first send and kept (sessionStorage, by payment and act) until a definite
// answer, so a retry after a cut connection sends the same key.
import { Refused, newKey, post } from "../../app/js/api.js";
import { errorLine, h, link, onLeave, redraw, show } from "../../app/js/dom.js";
import { money, t } from "../../app/js/i18n.js";
import { clock, explain, shortName } from "./common.js";
import { banner, listen, live } from "./live.js";

const PAYMENTS = "/api/v1/merchant/payments";

export function incomingScreen() {
  const busy = new Map(); // payment id → "confirm" | "decline" while its request is out
  let message = null;
  let error = null;
  let screen = null;
  // Drawn again when the list changed (not for every event: a tap is never lost to a redraw).
  const ids = () => [...live.pending.keys()].sort().join(",");
  let shown = ids();
  onLeave(
    listen(() => {
      if (ids() === shown) return;
      shown = ids();
      redraw(screen);
    }),
  );
  const resolve = async (payment, act) => {
    if (busy.has(payment.id)) return; // a double tap sends nothing more
    busy.set(payment.id, act);
    message = null;
    error = null;
    redraw(screen);
    const stored = `points.till.${act}.${payment.id}`;
    const key = sessionStorage.getItem(stored) || newKey();
    sessionStorage.setItem(stored, key);
    try {
      const done = await post(`${PAYMENTS}/${encodeURIComponent(payment.id)}/${act}`, {}, key);
      sessionStorage.removeItem(stored);
      live.pending.delete(payment.id);
      message = done.state === "voided" ? t().declined(money(done.amount)) : t().confirmed(money(done.amount));
    } catch (failure) {
      if (failure instanceof Refused && failure.problem.code !== "request_in_progress") {
        sessionStorage.removeItem(stored);
      }
      if (failure instanceof Refused && failure.problem.code === "payment_timed_out") {
        live.pending.delete(payment.id);
        error = t().timedOut(money(payment.amount));
      } else {
        if (failure instanceof Refused && failure.problem.code === "payment_not_pending") {
          live.pending.delete(payment.id);
        }
        error = explain(failure);
      }
    }
    busy.delete(payment.id);
    banner();
    redraw(screen);
  };
  screen = show("incoming", () => {
    const waiting = [...live.pending.values()].sort((a, b) => (a.created_at < b.created_at ? -1 : 1));
    return [
      h("h1", {}, t().incomingTitle),
      h("p", {}, t().incomingHelp),
      h("p", { id: "resolved", role: "status", class: message ? "done-line" : "done-line empty" }, message || ""),
      errorLine(error),
      waiting.length === 0 && h("p", { id: "incoming-empty", class: "lead" }, t().incomingEmpty),
      h(
        "ul",
        { id: "incoming", class: "incoming" },
        waiting.map((payment) => {
          const act = busy.get(payment.id);
          return h(
            "li",
            { class: "incoming-item", "data-payment": payment.id },
            h("p", { class: "huge incoming-amount" }, money(payment.amount)),
            h("p", { class: "when" }, `${clock(payment.created_at)} ・ ${t().customer(shortName(payment.customer))}`),
            payment.confirm_by && h("p", { class: "quiet" }, t().confirmBy(clock(payment.confirm_by))),
            h(
              "div",
              { class: "pair" },
              h(
                "button",
                {
                  type: "button",
                  class: "button primary confirm",
                  "aria-label": t().confirmOf(money(payment.amount)),
                  disabled: Boolean(act),
                  onclick: () => resolve(payment, "confirm"),
                },
                act === "confirm" ? t().confirming : t().confirm,
              ),
              h(
                "button",
                {
                  type: "button",
                  class: "button danger decline",
                  "aria-label": t().declineOf(money(payment.amount)),
                  disabled: Boolean(act),
                  onclick: () => resolve(payment, "decline"),
                },
                act === "decline" ? t().declining : t().decline,
              ),
            ),
          );
        }),
      ),
      link("done", t().done, "#/home"),
    ];
  });
}
