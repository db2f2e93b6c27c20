// The language on screen (Japanese unless the resident chose English) and how amounts and dates
// are written: `1,200 pt`, `2026年3月31日` (English: `31 March 2026`), always in Japan's time.
import ja from "./strings-ja.js";
import en from "./strings-en.js";

let STRINGS = { ja, en };
const KEY = "points.lang";
let current = localStorage.getItem(KEY) === "en" ? "en" : "ja";

export function lang() {
  return current;
}

export function t() {
  return STRINGS[current];
}

// Another app's words (the staff app: `useStrings({ ja, en })` before its first screen).
export function useStrings(tables) {
  STRINGS = tables;
}

export function setLang(code) {
  current = code === "en" ? "en" : "ja";
  localStorage.setItem(KEY, current);
  document.documentElement.lang = current;
}

document.documentElement.lang = current;

export function money(amount) {
  return `${Number(amount).toLocaleString("en-US")} pt`;
}

// A calendar date "2027-03-31" (no time zone: it is Japan's date already).
export function day(isoDate) {
  const [y, m, d] = isoDate.split("-").map(Number);
  if (current === "ja") return `${y}年${m}月${d}日`;
  const month = new Date(Date.UTC(y, m - 1, d)).toLocaleString("en-GB", {
    month: "long",
    timeZone: "UTC",
  });
  return `${d} ${month} ${y}`;
}

// An instant, in Japan's time: "2026年3月31日 14:05" / "31 March 2026, 14:05".
export function moment(instant) {
  const at = new Date(instant);
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat("en-GB", {
      timeZone: "Asia/Tokyo",
      year: "numeric",
      month: "numeric",
      day: "numeric",
      hour: "2-digit",
      minute: "2-digit",
      hourCycle: "h23",
    })
      .formatToParts(at)
      .map((part) => [part.type, part.value]),
  );
  const date = day(`${parts.year}-${parts.month}-${parts.day}`);
  return current === "ja"
    ? `${date} ${parts.hour}:${parts.minute}`
    : `${date}, ${parts.hour}:${parts.minute}`;
}

// The sentence for an API refusal (never its code).
export function sentence(problem) {
  const words = t().problems;
  if (!problem) return words.fallback;
  if (problem.code === "insufficient_balance" && Number.isInteger(problem.available)) {
    return words.insufficient_balance_with(money(problem.available));
  }
  if (problem.code === "out_of_stock" && problem.in_stock > 0) {
    return words.out_of_stock_with(problem.in_stock);
  }
  if (problem.code === "exchange_limit_exceeded" && Number.isInteger(problem.left)) {
    return words.exchange_limit_exceeded_with(problem.left);
  }
  if (problem.code && problem.code.startsWith("token_") && !(problem.code in words)) {
    return words.token_malformed;
  }
  return words[problem.code] || words.fallback;
}
