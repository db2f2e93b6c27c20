// The cards to print (印刷待ちのカード): a tray of cards staff mean to print together, up to ten on
// one A4 card sheet (POST /api/v1/counter/cards/print-sheet answers the sheet as SVG, shown in the
// page; printing prints the sheet alone). A card goes in from the card screen after it is issued
// or from the resident's page; the tray screen lists whose card each is, removes one, and lays the
// first ten out on a sheet.
//
// The tray is this PC's work list for the day: it is kept in this tab's sessionStorage (gone when
// the tab closes, never on the server), and holds only ids, the card's and its resident's; the
// names and numbers are read from the API when the tray screen opens.
import { get } from "../../app/js/api.js";
import { button, errorLine, h, onScreen, redraw, svgOf } from "../../app/js/dom.js";
import { moment } from "../../app/js/i18n.js";
import { desk, drawMenu, sentenceOf, table } from "./desk.js";
import { act, doneLine, nameOf, svgText, takeDone, w } from "./counter-kit.js";

const KEY = "points.counter.tray";
// The cards one A4 sheet holds (2 columns x 5 rows, the API's limit).
export const SHEET_MOST = 10;

// The tray: [{ card_id, resident_id, added_at }], oldest first.
export function trayCards() {
  try {
    const kept = JSON.parse(sessionStorage.getItem(KEY) || "[]");
    return Array.isArray(kept) ? kept.filter((row) => row && row.card_id && row.resident_id) : [];
  } catch {
    return [];
  }
}

function keep(rows) {
  sessionStorage.setItem(KEY, JSON.stringify(rows));
}

// Put a card in the tray (once): true if it was added, false if it was there already.
export function addToTray(cardId, residentId) {
  const rows = trayCards();
  if (rows.some((row) => row.card_id === cardId)) return false;
  rows.push({ card_id: cardId, resident_id: residentId, added_at: new Date().toISOString() });
  keep(rows);
  return true;
}

export function removeFromTray(cardIds) {
  const gone = new Set(cardIds);
  keep(trayCards().filter((row) => !gone.has(row.card_id)));
}

// The button that puts the card in the tray, and says so in the screen's done line (`#done`).
export function trayButton(cardId, residentId) {
  return button("add-tray", w().trayAdd, () => {
    const added = addToTray(cardId, residentId);
    const count = trayCards().length;
    const line = document.getElementById("done");
    if (line) {
      line.textContent = added ? w().trayAdded(count) : w().trayAlready(count);
      line.className = "done-line";
    }
  }, "secondary");
}

// The tray screen: each card with whose it is (read from the API), removed one by one; the first
// ten laid out on an A4 sheet, printed, then taken out of the tray.
export function trayScreen() {
  let done = takeDone();
  // card id -> { name, number, status } as the API says now; null while loading.
  let known = null;
  let failed = null;
  let svg = null;
  let onSheet = [];
  let screen = null;

  const load = async () => {
    const residents = [...new Set(trayCards().map((row) => row.resident_id))];
    const found = {};
    try {
      await Promise.all(
        residents.map(async (id) => {
          const path = `/api/v1/counter/residents/${encodeURIComponent(id)}`;
          const [resident, cards] = await Promise.all([get(path), get(`${path}/cards`)]);
          for (const card of cards) found[card.id] = { name: nameOf(resident), number: card.number, status: card.status };
        }),
      );
      failed = null;
    } catch (failure) {
      failed = sentenceOf(w, failure);
    }
    known = found;
    if (onScreen(screen)) redraw(screen);
  };

  const printable = () => trayCards().filter((row) => known && known[row.card_id]?.status === "active");

  const remove = (cardId) => () => {
    removeFromTray([cardId]);
    svg = null;
    done = () => w().trayRemoved;
    redraw(screen);
    drawMenu();
    document.getElementById("tray-title")?.focus();
  };

  const layOut = async () => {
    const ids = printable().slice(0, SHEET_MOST).map((row) => row.card_id);
    if (!ids.length) {
      failed = w().noPrintable;
      redraw(screen);
      return;
    }
    const text = await act("sheet-go", () => svgText("/api/v1/counter/cards/print-sheet", { card_ids: ids }));
    if (!text) return;
    svg = text;
    onSheet = ids;
    done = null;
    failed = null;
    redraw(screen);
    document.getElementById("sheet-actions")?.scrollIntoView({ block: "start" });
    document.getElementById("print-sheet")?.focus({ preventScroll: true });
  };

  const clearPrinted = () => {
    removeFromTray(onSheet);
    const count = onSheet.length;
    svg = null;
    onSheet = [];
    done = () => w().sheetCleared(count);
    redraw(screen);
    drawMenu();
  };

  const draw = () => {
    const rows = trayCards();
    const ready = printable();
    return [
      h("h1", { id: "tray-title" }, w().trayTitle),
      doneLine(done),
      errorLine(failed),
      h("p", { class: "hint" }, w().trayLead),
      !rows.length && h("p", { id: "tray-empty", class: "quiet" }, w().trayEmpty),
      rows.length > 0 && !known && h("p", { class: "quiet", role: "status" }, w().loading),
      rows.length > 0 &&
        known &&
        table(
          "tray",
          [
            { label: w().whose, value: (row) => known[row.card_id]?.name || "—" },
            { label: w().cardNumber, value: (row) => known[row.card_id]?.number || "—" },
            {
              label: w().cardState,
              value: (row) => {
                const status = known[row.card_id]?.status;
                return status === "active" ? w().cardStatus.active : w().notPrintable;
              },
            },
            { label: w().trayAddedAt, value: (row) => moment(row.added_at) },
            {
              label: w().trayRemove,
              value: (row) =>
                h(
                  "button",
                  {
                    type: "button",
                    class: "button secondary",
                    "data-card": row.card_id,
                    "aria-label": w().trayRemoveOf(known[row.card_id]?.number || ""),
                    onclick: remove(row.card_id),
                  },
                  w().trayRemove,
                ),
            },
          ],
          rows,
        ),
      ready.length > 0 &&
        h(
          "div",
          { class: "row" },
          h("button", { id: "sheet-go", type: "button", class: "button primary", onclick: layOut }, w().sheetGo(Math.min(ready.length, SHEET_MOST))),
        ),
      ready.length > SHEET_MOST && h("p", { class: "hint" }, w().sheetRest(ready.length - SHEET_MOST)),
      svg && h("p", { class: "hint" }, w().sheetLead),
      svg &&
        h(
          "div",
          { id: "sheet-actions", class: "row" },
          button("print-sheet", w().printSheet, () => print()),
          button("sheet-done", w().sheetDone, clearPrinted, "secondary"),
        ),
      svg && h("figure", { id: "sheet", class: "sheet" }, svgOf(svg), h("figcaption", { class: "visually-hidden" }, w().sheetFace)),
    ];
  };
  screen = desk("counter-tray", draw, "tray");
  if (trayCards().length) load();
  else known = {};
}
