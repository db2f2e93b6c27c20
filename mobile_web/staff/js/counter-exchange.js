// An exchange from the catalog for a resident without a phone: staff choose the item and the
// quantity and say why, the resident types the PIN on this PC, staff confirm; the answer is the
// receipt to print and what the card has left. The request carries an Idempotency-Key made once
// per exchange and kept until a definite answer (sent again after no answer, never twice).
import { Refused, get, newKey, post } from "../../app/js/api.js";
import { button, errorLine, h, redraw, setError } from "../../app/js/dom.js";
import { day, lang, money } from "../../app/js/i18n.js";
import { desk, field, sentenceOf, sums } from "./desk.js";
import {
  activeCard,
  loadResident,
  nameOf,
  pinField,
  reasonField,
  valueOf,
  w,
} from "./counter-kit.js";

const itemName = (item) => (lang() === "ja" ? item.name_ja : item.name_en);

export function exchangeScreen(residentId) {
  let known = null;
  let items = null;
  let failed = null;
  let chosen = null;
  let quantity = 1;
  let reason = "";
  let asking = false;
  let busy = false;
  let key = null;
  let pin = "";
  let exchanged = null;
  let screen = null;

  const load = async () => {
    try {
      [known, items] = await Promise.all([loadResident(residentId), get("/api/v1/counter/catalog")]);
    } catch (failure) {
      failed = sentenceOf(w, failure);
    }
    redraw(screen);
  };

  const ask = (event) => {
    event.preventDefault();
    const item = (items || []).find((row) => row.id === chosen);
    quantity = Number(valueOf("ex-quantity") || 1);
    reason = valueOf("ex-reason");
    pin = valueOf("ex-pin");
    if (!item) return setError(w().chooseItem);
    if (!Number.isInteger(quantity) || quantity < 1 || quantity > 10) return setError(w().quantityShape);
    if (!reason) return setError(w().reasonMissing);
    if (!/^[0-9]{4,6}$/.test(pin)) return setError(w().pinShape);
    asking = true;
    failed = null;
    redraw(screen);
    const yes = document.getElementById("ex-confirm");
    if (yes) yes.focus();
    return undefined;
  };

  const back = () => {
    asking = false;
    pin = "";
    redraw(screen);
  };

  const confirm = async () => {
    if (busy) return;
    const card = activeCard(known);
    busy = true;
    key = key || newKey();
    const yes = document.getElementById("ex-confirm");
    if (yes) yes.disabled = true;
    setError(null);
    try {
      exchanged = await post(
        "/api/v1/counter/assisted-exchanges",
        { card_number: card.number, pin, item_id: chosen, quantity, reason },
        key,
      );
      key = null;
      pin = "";
      asking = false;
      known = await loadResident(residentId).catch(() => known);
    } catch (failure) {
      busy = false;
      if (!(failure instanceof Refused)) {
        // No answer: whether it was exchanged is unknown. The question stays, and pressing
        // again sends the same exchange with the same key (never a second exchange).
        if (yes) yes.disabled = false;
        return setError(sentenceOf(w, failure));
      }
      // A refusal is a definite answer: the next try is a new exchange.
      key = null;
      failed = sentenceOf(w, failure);
      pin = "";
      asking = false;
    } finally {
      busy = false;
    }
    redraw(screen);
    return undefined;
  };

  const itemChoice = (item) =>
    h(
      "label",
      { class: "choice item-choice" },
      h("input", {
        type: "radio",
        name: "ex-item",
        value: item.id,
        checked: item.id === chosen,
        disabled: item.stock < 1,
        onchange: () => {
          chosen = item.id;
        },
      }),
      h("span", { class: "item-name" }, itemName(item)),
      h("span", { class: "item-points" }, money(item.points)),
      h("span", { class: "item-stock" }, item.stock < 1 ? w().outOfStock : w().inStock(item.stock)),
    );

  const draw = () => {
    const title = h("h1", {}, w().exchangeTitle);
    if (!known || !items) {
      return [title, errorLine(failed), !failed && h("p", { class: "quiet", role: "status" }, w().loading)];
    }
    const card = activeCard(known);
    const back_ = h(
      "a",
      { id: "back-resident", href: `#/resident/${encodeURIComponent(residentId)}`, class: "button link secondary" },
      w().backResident,
    );
    const head = [
      title,
      sums("exchange-for", [
        [w().residentTitle, nameOf(known.resident)],
        [w().cardNumber, card ? card.number : w().none],
        ...known.wallets.map((row) => [w().balanceOf(lang() === "ja" ? row.name_ja : row.name_en), money(row.balance)]),
      ]),
    ];
    if (exchanged) {
      const item = items.find((row) => row.id === exchanged.item_id);
      const receipt = exchanged.receipt;
      return [
        ...head,
        h("p", { id: "done", role: "status", class: "done-line" }, w().exchangedLine(item ? itemName(item) : exchanged.item_name_ja, exchanged.quantity, money(exchanged.points))),
        sums("exchange-receipt", [
          [w().balanceLeft, money(receipt.balance)],
          [
            w().expiringSoon,
            receipt.nearest_expiry && receipt.nearest_expiry.valid_until
              ? w().expiringOn(money(receipt.nearest_expiry.amount), day(receipt.nearest_expiry.valid_until))
              : w().none,
          ],
        ]),
        h(
          "div",
          { class: "row" },
          h("a", { id: "receipt-link", href: exchanged.receipt_url, target: "_blank", rel: "noopener", class: "button link" }, w().printReceipt),
          button("exchange-again", w().exchangeAgain, () => {
            exchanged = null;
            chosen = null;
            redraw(screen);
          }, "secondary"),
          back_,
        ),
      ];
    }
    if (!card) return [...head, h("p", { id: "no-card", class: "warning" }, w().exchangeNeedsCard), back_];
    if (asking) {
      const item = items.find((row) => row.id === chosen);
      return [
        ...head,
        h("h2", {}, w().confirmTitle),
        h("p", { id: "ex-question", class: "lead" }, w().exchangeQuestion(itemName(item), quantity, money(item.points * quantity))),
        errorLine(null),
        h(
          "div",
          { class: "row" },
          button("ex-confirm", w().exchangeGo, confirm),
          button("ex-back", w().change, back, "secondary"),
        ),
      ];
    }
    return [
      ...head,
      errorLine(failed),
      h(
        "form",
        { id: "exchange-form", onsubmit: ask, novalidate: true },
        items.length
          ? h("fieldset", { id: "ex-items", class: "items" }, h("legend", {}, w().item), items.map(itemChoice))
          : h("p", { id: "no-items", class: "warning" }, w().noItems),
        h(
          "div",
          { class: "row fields" },
          field("ex-quantity", w().quantity, h("input", { id: "ex-quantity", type: "number", min: "1", max: "10", value: String(quantity), inputmode: "numeric" })),
          reasonField("ex-reason", w().exchangeReasonHint, reason),
        ),
        pinField("ex-pin", w().residentPin, w().residentPinHint),
        h("div", { class: "row" }, h("button", { id: "ex-next", type: "submit", class: "button primary", disabled: !items.length }, w().next), back_),
      ),
    ];
  };
  screen = desk("counter-exchange", draw, "home");
  load();
}
