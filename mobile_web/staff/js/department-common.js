// What the department PC's screens share: its words, its programs (read once per screen), the
// fiscal year of today (April 1, Tokyo time), a CSV file sent as the body (the API takes the file
// as `text/csv`, not JSON), and the program chooser.
import { Refused, Unreachable, get } from "../../app/js/api.js";
import { errorLine, h } from "../../app/js/dom.js";
import { lang } from "../../app/js/i18n.js";
import { field, sentenceOf, words } from "./desk.js";
import { kitOf } from "./desk-kit.js";
import table from "./words-department.js";

export const w = words(table);

export const ISSUER = "/api/v1/issuer";

// A refusal (or a cut connection) as the sentence this role says.
export function why(failure) {
  return sentenceOf(w, failure);
}

// The office roles' kit (desk-kit.js) in the department's words: one act at a time (the state's
// `refresh()` draws it again; a failure is its error line), an act that needs a reason, a load.
export const { act, actFor, load } = kitOf(w, why);

// The program's name in the language on screen.
export function nameOf(program) {
  return program ? (lang() === "ja" ? program.name_ja : program.name_en) : "";
}

// Today's date in Tokyo ("2026-12-05").
export function tokyoToday() {
  return new Intl.DateTimeFormat("en-CA", { timeZone: "Asia/Tokyo" }).format(new Date());
}

// The fiscal year of a date: April to March, named by the year it starts.
export function fiscalYearOf(isoDate) {
  const [y, m] = isoDate.split("-").map(Number);
  return m >= 4 ? y : y - 1;
}

export function thisFiscalYear() {
  return fiscalYearOf(tokyoToday());
}

// Every program of the department (the API pages by id).
export async function loadPrograms() {
  const all = [];
  let cursor = null;
  do {
    const query = new URLSearchParams({ limit: "100" });
    if (cursor) query.set("cursor", cursor);
    const page = await get(`${ISSUER}/programs?${query}`);
    all.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor);
  return all;
}

// A select of programs (`chosen` the id): going to `#/<route>/<id>` when another is chosen.
export function programChooser(id, programs, chosen, onChoose) {
  const select = h(
    "select",
    { id, onchange: (event) => onChoose(event.target.value) },
    h("option", { value: "", selected: !chosen }, w().chooseProgram),
    programs.map((program) =>
      h("option", { value: program.id, selected: program.id === chosen }, nameOf(program)),
    ),
  );
  return field(id, w().program, select);
}

// The top of a screen about one program: `early` is the whole screen while the programs are read
// or none is chosen; else the chosen program, the heading and the chooser (`id`).
export function programTop(state, id, title, intro, onChoose) {
  const head = [h("h1", {}, title), h("p", { class: "quiet" }, intro)];
  if (!state.programs) return { early: [...head, errorLine(state.error), h("p", { class: "quiet" }, w().loading)] };
  const chosen = state.programs.find((item) => item.id === state.programId);
  const chooser = programChooser(id, state.programs, state.programId, onChoose);
  if (!chosen) return { early: [...head, chooser, errorLine(state.error)] };
  return { chosen, head, chooser };
}

// POST a CSV file (its bytes, read once: a retry sends the very same file) as `text/csv`.
export async function postCsv(path, bytes, key) {
  const headers = { Accept: "application/json", "X-Points-Client": "staff", "Content-Type": "text/csv" };
  if (key) headers["Idempotency-Key"] = key;
  let response;
  try {
    response = await fetch(path, { method: "POST", headers, body: bytes, credentials: "same-origin", cache: "no-store" });
  } catch (error) {
    throw new Unreachable(error);
  }
  const type = response.headers.get("Content-Type") || "";
  if (!type.includes("json")) throw new Unreachable(new Error(`HTTP ${response.status}`));
  let data;
  try {
    data = await response.json();
  } catch (error) {
    throw new Unreachable(error);
  }
  if (!response.ok) throw new Refused({ status: response.status, ...data });
  return data;
}

// A program's status as a word.
export function statusWord(status) {
  return w().programStatus[status] || status;
}

export function moduleWord(kind) {
  return w().moduleName[kind] || kind;
}
