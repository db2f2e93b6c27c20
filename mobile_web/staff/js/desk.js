// The city's office PCs (counter, department, finance, admin): what their screens share. A desk
// screen is drawn with `desk(name, draw)`: the role's menu (the <nav id="desk-nav"> beside the
// screen, its current item marked) and the screen itself, as `show` draws it (its first child is
// its <h1>). Each role's module (counter.js, department.js, finance.js, admin.js) exports
// `menu` (the routes its menu lists, in order) and `routes` (route name -> screen); desks.js
// picks the module by the session's role.
//
// Words: each role has its own table (words-<role>.js: `{ ja: {...}, en: {...} }`, the same keys
// in the same order), read through `words(table)()`; the staff app's shared words (t()) stay in
// strings-ja.js / strings-en.js.
import { Refused } from "../../app/js/api.js";
import { h, show } from "../../app/js/dom.js";
import { lang, money, t } from "../../app/js/i18n.js";
import { explain } from "./common.js";

// The words of one role's table in the language on screen.
export function words(table) {
  return () => table[lang()];
}

// A failed request as a sentence: the role's own sentence for the refusal's code (its table's
// `problems`), else the staff app's (common.js explain: a lost session goes back to enrolment).
export function sentenceOf(w, failure) {
  const own = failure instanceof Refused && w().problems && w().problems[failure.problem.code];
  if (own && failure.problem.status !== 401) return typeof own === "function" ? own(failure.problem) : own;
  return explain(failure);
}

let menuOf = null;
let current = null;

// The menu of the role on this PC: [{ route, label: () => text }], drawn in <nav id="desk-nav">.
export function setMenu(menu) {
  menuOf = menu;
  document.body.classList.toggle("desk", Boolean(menu));
  drawMenu();
}

export function setCurrent(route) {
  current = route;
}

// Draw the menu again (after the language changed, or the route).
export function drawMenu() {
  const nav = document.getElementById("desk-nav");
  if (!nav) return;
  if (!menuOf) {
    nav.hidden = true;
    nav.replaceChildren();
    return;
  }
  nav.hidden = false;
  nav.setAttribute("aria-label", t().deskMenu);
  const items = [...menuOf, { route: "settings", label: () => t().settings }];
  nav.replaceChildren(
    h(
      "ul",
      {},
      items.map((item) =>
        h(
          "li",
          {},
          h(
            "a",
            {
              id: `menu-${item.route}`,
              href: `#/${item.route}`,
              "aria-current": item.route === current ? "page" : false,
            },
            item.label(),
          ),
        ),
      ),
    ),
  );
}

// Show a desk screen: `route` is the menu item it belongs to (marked as current).
export function desk(name, draw, route = name) {
  current = route;
  drawMenu();
  return show(name, draw);
}

// A table: `columns` are [{ label, key?, value?(row), numeric? }], `rows` the data. Numeric
// columns align right; an empty table says `empty`.
export function table(id, columns, rows, { caption, empty } = {}) {
  if (!rows.length && empty) return h("p", { id: `${id}-empty`, class: "quiet" }, empty);
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { id, class: "grid" },
      caption && h("caption", {}, caption),
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          columns.map((column) =>
            h("th", { scope: "col", class: column.numeric ? "num" : null }, column.label),
          ),
        ),
      ),
      h(
        "tbody",
        {},
        rows.map((row) =>
          h(
            "tr",
            {},
            columns.map((column) =>
              h(
                "td",
                { class: column.numeric ? "num" : null },
                column.value ? column.value(row) : row[column.key],
              ),
            ),
          ),
        ),
      ),
    ),
  );
}

// A labelled field: h("label") then the input (or select) `control`, with an optional hint.
export function field(id, label, control, hint) {
  if (hint) control.setAttribute("aria-describedby", `${id}-hint`);
  return h(
    "div",
    { class: "field" },
    h("label", { for: id }, label),
    control,
    hint && h("p", { id: `${id}-hint`, class: "hint" }, hint),
  );
}

// Sums as a definition list: [[label, value], ...].
export function sums(id, pairs) {
  return h(
    "dl",
    { id, class: "sums" },
    pairs.map(([label, value]) => [h("dt", {}, label), h("dd", {}, value)]),
  );
}

export { money };
