// Exchanging points for goods at a city counter: the items offered now (GET /api/v1/me/catalog,
// #/exchange), the confirmation (#/exchange/<item id>: quantity, total, balance after), and the
// receipt to show at the counter (#/exchanged/<exchange id>, kept in sessionStorage so that a
// reload or the back button from the printable receipt shows it again).
//
// One confirmation has one Idempotency-Key, made when it is first sent and kept until the API gave
// a definite answer: a double tap sends nothing more, and "send again" after a cut connection
// sends the same key with the same quantity (which is then fixed), so it never exchanges twice.
import { Refused, Unreachable, get, newKey, post } from "./api.js";
import { button, errorLine, h, link, redraw, setError, show } from "./dom.js";
import { lang, money, moment, sentence, t } from "./i18n.js";
import { go, loadWallets, offline, state, walletName } from "./main.js";

const QUANTITY_MAX = 10;
const RECEIPT = "points.exchanged"; // the last exchange's answer, for its receipt screen

function itemName(item) {
  return lang() === "ja" ? item.name_ja : item.name_en;
}

function walletOf(pointType) {
  return (state.wallets || []).find((wallet) => wallet.point_type === pointType) || null;
}

function balanceOf(pointType) {
  const wallet = walletOf(pointType);
  return wallet ? wallet.balance : 0;
}

function failureText(failure) {
  if (!(failure instanceof Refused)) return t().problems.network;
  // At a city counter, not a shop.
  if (failure.problem.code === "merchant_not_active") return t().problems.counter_not_active;
  return sentence(failure.problem);
}

// The most one may choose: the stock, the limit per resident and the API's 10 at once.
function most(item) {
  const limit = item.per_resident_limit == null ? QUANTITY_MAX : item.per_resident_limit;
  return Math.max(0, Math.min(QUANTITY_MAX, item.stock, limit));
}

// --- The items offered -------------------------------------------------------------------------

export function catalogScreen(notice = null) {
  let items = null;
  let error = notice;
  const screen = show("exchange", () => {
    // The balance of each kind of points the items take (the main wallet's when there is none).
    const types = items && items.length ? [...new Set(items.map((item) => item.point_type))] : [];
    const wallets = types.length ? types.map(walletOf).filter(Boolean) : [];
    return [
      h("h1", {}, t().exchangeTitle),
      h("p", {}, t().exchangeIntro),
      h(
        "div",
        { id: "exchange-balance", class: "balance-card" },
        wallets.length
          ? wallets.map((wallet) => [
              h("p", { class: "label" }, t().balanceOf(walletName(wallet))),
              h("p", { class: "balance small" }, money(wallet.balance)),
            ])
          : [h("p", { class: "label" }, t().balance), h("p", { class: "balance small" }, money(0))],
      ),
      errorLine(error),
      items === null && !error && h("p", { class: "quiet", role: "status" }, t().loading),
      items && items.length === 0 && h("p", { id: "catalog-empty", class: "lead" }, t().catalogEmpty),
      items && h("ul", { id: "catalog", class: "catalog" }, items.map((item) => itemCard(item))),
      link("back", t().back, "#/home"),
    ];
  });
  get("/api/v1/me/catalog")
    .then((found) => {
      // Out of stock last, shown so the resident knows it exists.
      items = [...found.filter((item) => item.stock > 0), ...found.filter((item) => item.stock < 1)];
    })
    .catch((failure) => {
      if (failure instanceof Unreachable) offline(!navigator.onLine);
      error = failureText(failure);
    })
    .finally(() => redraw(screen));
}

function itemCard(item) {
  const out = item.stock < 1;
  const nameId = `item-name-${item.id}`;
  return h(
    "li",
    { class: out ? "item out" : "item", "data-item": item.id },
    item.image_url &&
      h("img", { src: item.image_url, alt: itemName(item), width: "320", height: "240", loading: "lazy" }),
    h("h2", { id: nameId }, itemName(item)),
    h("p", { class: "price" }, money(item.points)),
    h("p", { class: out ? "stock none" : "stock" }, out ? t().outOfStock : t().inStock(item.stock)),
    item.per_resident_limit != null && h("p", { class: "limit" }, t().perResident(item.per_resident_limit)),
    h(
      "button",
      {
        type: "button",
        id: `choose-${item.id}`,
        class: out ? "button secondary" : "button primary",
        disabled: out,
        "aria-describedby": nameId,
        onclick: () => go(`#/exchange/${encodeURIComponent(item.id)}`),
      },
      out ? t().outOfStock : t().chooseItem,
    ),
  );
}

// --- The confirmation --------------------------------------------------------------------------

// #/exchange/<item id>: the item as offered now (its stock may have changed since the list).
export async function itemScreen(itemId) {
  let items;
  try {
    items = await get("/api/v1/me/catalog");
  } catch (failure) {
    if (failure instanceof Unreachable) offline(!navigator.onLine);
    return catalogScreen(failureText(failure));
  }
  const item = items.find((offered) => offered.id === itemId);
  if (!item) return catalogScreen(t().problems.item_not_available);
  if (item.stock < 1) return catalogScreen(t().problems.out_of_stock);
  return confirmScreen(item);
}

function confirmScreen(item) {
  const top = most(item);
  let quantity = 1;
  let key = null; // this confirmation's Idempotency-Key, once sent
  let unsure = false; // sent without a definite answer: the same quantity and key again
  let sending = false;

  const total = () => item.points * quantity;
  const change = (by) => () => {
    quantity = Math.min(top, Math.max(1, quantity + by));
    setError(null);
    redraw();
    // The focus stays on the stepper (on its other button at either end).
    const same = document.getElementById(by < 0 ? "fewer" : "more-items");
    const other = document.getElementById(by < 0 ? "more-items" : "fewer");
    const next = same && !same.disabled ? same : other;
    if (next && !next.disabled) next.focus();
  };

  const send = async () => {
    if (sending) return; // a double tap sends nothing more
    const balance = balanceOf(item.point_type);
    if (!unsure && total() > balance) {
      return setError(t().problems.insufficient_balance_with(money(balance)));
    }
    sending = true;
    key = key || newKey();
    const exchangeButton = document.getElementById("exchange");
    if (exchangeButton) {
      exchangeButton.disabled = true;
      exchangeButton.textContent = t().exchanging;
    }
    try {
      const done = await post("/api/v1/me/exchanges", { item_id: item.id, quantity }, key);
      sending = false;
      sessionStorage.setItem(RECEIPT, JSON.stringify(done));
      // The receipt takes the confirmation's place: back from it is the list, not a new exchange.
      return location.replace(`#/exchanged/${encodeURIComponent(done.id)}`);
    } catch (failure) {
      sending = false;
      const definite = failure instanceof Refused && failure.problem.code !== "request_in_progress";
      if (definite) {
        key = null; // nothing was exchanged: the next try is a new request
        unsure = false;
      } else {
        unsure = true;
      }
      if (failure instanceof Unreachable) offline(!navigator.onLine);
      redraw();
      setError(failureText(failure));
    }
  };

  show("exchange-confirm", () => {
    const balance = balanceOf(item.point_type);
    return [
      h("h1", {}, t().exchangeConfirmTitle),
      item.image_url && h("img", { class: "thumb", src: item.image_url, alt: itemName(item), width: "320", height: "240" }),
      h("p", { id: "item-name", class: "shop" }, itemName(item)),
      h("p", {}, t().pointsEach(money(item.points))),
      h(
        "div",
        { class: "stepper", role: "group", "aria-labelledby": "quantity-label" },
        h("p", { id: "quantity-label", class: "label" }, t().quantity),
        h(
          "div",
          { class: "stepper-row" },
          h(
            "button",
            { id: "fewer", type: "button", class: "key", "aria-label": t().fewer, disabled: unsure || quantity <= 1, onclick: change(-1) },
            "−",
          ),
          h("output", { id: "quantity", class: "big", "aria-live": "polite" }, t().pieces(quantity)),
          h(
            "button",
            { id: "more-items", type: "button", class: "key", "aria-label": t().moreItems, disabled: unsure || quantity >= top, onclick: change(1) },
            "+",
          ),
        ),
        h("p", { class: "hint" }, t().quantityHelp(top)),
      ),
      h(
        "dl",
        { class: "sums" },
        h("dt", {}, t().exchangeTotal),
        h("dd", { id: "total", class: "big" }, money(total())),
        h("dt", {}, t().exchangeBalanceAfter),
        h("dd", { id: "balance-after" }, money(balance - total())),
      ),
      errorLine(null),
      unsure
        ? button("exchange", t().retry, send)
        : button("exchange", sending ? t().exchanging : t().exchangeDo, send),
      link("cancel", t().otherItem, "#/exchange"),
    ];
  });
}

// --- The receipt -------------------------------------------------------------------------------

// #/exchanged/<exchange id>: the receipt of the last exchange made on this phone in this session.
export function exchangedScreen(exchangeId) {
  const done = JSON.parse(sessionStorage.getItem(RECEIPT) || "null");
  if (!done || done.id !== exchangeId) return location.replace("#/exchange");
  return receiptScreen(done);
}

function receiptScreen(done) {
  let fresh = false; // the balance is shown once it is read again after the exchange
  const payment = done.payment || {};
  const name = () => (lang() === "ja" ? done.item_name_ja : done.item_name_en);
  const counter = () => (lang() === "ja" ? payment.merchant_name_ja : payment.merchant_name_en);
  const screen = show("exchanged", () => {
    const wallet = fresh && walletOf(payment.point_type);
    return [
      h("h1", { class: "paid-title" }, h("span", { class: "tick", "aria-hidden": "true" }, "✓"), t().exchangedTitle),
      h("p", { class: "lead show-counter" }, t().showAtCounter),
      h(
        "dl",
        { class: "sums receipt" },
        h("dt", {}, t().item),
        h("dd", { id: "receipt-item", class: "shop" }, name()),
        h("dt", {}, t().quantity),
        h("dd", { id: "receipt-quantity" }, t().pieces(done.quantity)),
        h("dt", {}, t().pointsUsed),
        h("dd", { id: "receipt-points", class: "big" }, money(done.points)),
        h("dt", {}, t().exchangedAt),
        h("dd", { id: "receipt-at" }, moment(done.created_at)),
        counter() && [h("dt", {}, t().counter), h("dd", { id: "receipt-counter" }, counter())],
        h("dt", {}, t().exchangeNumber),
        h("dd", { id: "receipt-number", class: "number" }, done.id),
        wallet && [h("dt", {}, t().balanceNow), h("dd", { id: "receipt-balance" }, money(wallet.balance))],
      ),
      h("a", { id: "receipt-print", class: "button secondary", href: done.receipt_url }, t().printableReceipt),
      link("done", t().done, "#/home"),
    ];
  });
  loadWallets()
    .then(() => {
      fresh = true;
      redraw(screen);
    })
    .catch(() => {});
}
