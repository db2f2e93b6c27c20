// The finance PC's shared pieces: its words, Tokyo's date, months, and bar charts drawn as inline
// SVG (no library): each bar's value is in its <title> and in the table beside the chart.
import { lang, money } from "../../app/js/i18n.js";
import { sentenceOf, words } from "./desk.js";
import { kitOf } from "./desk-kit.js";
import table from "./words-finance.js";

export const w = words(table);

// The office roles' kit (desk-kit.js) in the finance's words: one act at a time (the state's
// `refresh()` draws it again; a failure is its error line), an act that needs a reason, a load,
// and the confirmation with a reason (`ask`, drawn where the screen puts `confirmBox(s)`).
export const { act, actFor, load, confirmBox, ask } = kitOf(w, (failure) => sentenceOf(w, failure));

const SVG = "http://www.w3.org/2000/svg";

// Today's date in Tokyo, "2026-12-05".
export function tokyoToday() {
  return new Intl.DateTimeFormat("en-CA", { timeZone: "Asia/Tokyo" }).format(new Date());
}

// "2026-12-05" moved by `months` (the first of that month).
export function monthStart(isoDate, months = 0) {
  const [y, m] = isoDate.split("-").map(Number);
  const at = new Date(Date.UTC(y, m - 1 + months, 1));
  return at.toISOString().slice(0, 10);
}

// The last day of the month of "2026-12-05".
export function monthEnd(isoDate) {
  const [y, m] = isoDate.split("-").map(Number);
  return new Date(Date.UTC(y, m, 0)).toISOString().slice(0, 10);
}

// A month "2027-07" as "2027年7月" / "July 2027".
export function monthName(period) {
  const [y, m] = period.split("-").map(Number);
  if (lang() === "ja") return `${y}年${m}月`;
  const name = new Date(Date.UTC(y, m - 1, 1)).toLocaleString("en-GB", { month: "long", timeZone: "UTC" });
  return `${name} ${y}`;
}

function shortMonth(period) {
  const m = Number(period.split("-")[1]);
  if (lang() === "ja") return `${m}月`;
  return new Date(Date.UTC(2000, m - 1, 1)).toLocaleString("en-GB", { month: "short", timeZone: "UTC" });
}

function el(tag, attributes = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function niceMax(value) {
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

function clip(text, length) {
  return text.length > length ? `${text.slice(0, length - 1)}…` : text;
}

// An empty chart of `width` × `height`, named `label` for a screen reader.
function chartOf(id, label, width, height) {
  return el("svg", { id, class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label });
}

// Columns by month: `bars` [{ period: "2027-07", value }], a bar each, the month under it (the
// year under January and the first bar).
export function monthChart(id, label, bars) {
  const width = 760;
  const height = 280;
  const left = 80;
  const bottom = 48;
  const top = 16;
  const plot = height - bottom - top;
  const max = niceMax(Math.max(0, ...bars.map((bar) => bar.value)));
  const slot = Math.min((width - left - 10) / Math.max(bars.length, 1), 90);
  const svg = chartOf(id, label, width, height);
  for (const fraction of [0, 0.5, 1]) {
    const y = top + plot * (1 - fraction);
    svg.append(
      el("line", { x1: left, x2: width - 10, y1: y, y2: y, class: "axis" }),
      el("text", { x: left - 8, y: y + 4, "text-anchor": "end" }, money(max * fraction)),
    );
  }
  bars.forEach((bar, index) => {
    const x = left + slot * index;
    const barHeight = (plot * Math.max(0, bar.value)) / max;
    svg.append(
      el(
        "rect",
        {
          class: "bar",
          x: x + slot * 0.15,
          y: top + plot - barHeight,
          width: slot * 0.7,
          height: Math.max(barHeight, 0),
          "data-period": bar.period,
        },
        el("title", {}, `${monthName(bar.period)}: ${money(bar.value)}`),
      ),
      el("text", { x: x + slot / 2, y: height - bottom + 18, "text-anchor": "middle" }, shortMonth(bar.period)),
    );
    if (index === 0 || bar.period.endsWith("-01")) {
      svg.append(
        el("text", { x: x + slot / 2, y: height - bottom + 36, "text-anchor": "middle" }, bar.period.slice(0, 4)),
      );
    }
  });
  return svg;
}

// Rows, one per name: `bars` [{ name, value }], the name at the left and the value at the bar's end.
export function rowChart(id, label, bars) {
  const width = 760;
  const row = 30;
  const left = 220;
  const right = 110;
  const height = Math.max(1, bars.length) * row + 10;
  const max = niceMax(Math.max(0, ...bars.map((bar) => bar.value)));
  const svg = chartOf(id, label, width, height);
  svg.append(el("line", { x1: left, x2: left, y1: 0, y2: height - 5, class: "axis" }));
  bars.forEach((bar, index) => {
    const y = 5 + row * index;
    const barWidth = ((width - left - right) * Math.max(0, bar.value)) / max;
    svg.append(
      el("text", { x: left - 8, y: y + row / 2 + 2, "text-anchor": "end" }, clip(bar.name, 16)),
      el(
        "rect",
        { class: "bar", x: left, y: y + 4, width: barWidth, height: row - 10 },
        el("title", {}, `${bar.name}: ${money(bar.value)}`),
      ),
      el("text", { x: left + barWidth + 6, y: y + row / 2 + 2 }, money(bar.value)),
    );
  });
  return svg;
}

// Sum `rows`' `value` by `keyOf(row)`: [{ key, value }] in key order.
export function sumBy(rows, keyOf, valueOf) {
  const sums = new Map();
  for (const row of rows) sums.set(keyOf(row), (sums.get(keyOf(row)) || 0) + valueOf(row));
  return [...sums.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([key, value]) => ({ key, value }));
}
