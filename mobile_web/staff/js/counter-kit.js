// What the counter PC's screens share: their words, one act at a time (a button disabled while its
// request is out, so a double click never sends twice), the resident at the counter as the API
// gives them, and the small fields the forms repeat (a PIN, a reason).
import { Refused, Unreachable, get, post } from "../../app/js/api.js";
import { h, setError } from "../../app/js/dom.js";
import { day, lang, money } from "../../app/js/i18n.js";
import { field, sentenceOf, words } from "./desk.js";
import table from "./words-counter.js";

export const w = words(table);

// The screens' state: what was found, the code or exchange just made, the line saying what was
// done (shown once on the next screen).
export const state = {
  // resident id -> { resident, card, wallets } (POST /counter/residents/find) and `cards`.
  residents: {},
  // The enrolment code just issued: { resident_id, code, expires_at }.
  code: null,
  // What was done, for the next screen's done line (a function of the words: it follows the
  // language).
  done: null,
};

let busy = false;

// Run `work` once at a time: the button `id` is disabled and the error line cleared while it runs;
// a refusal (or no answer) becomes the error line's sentence. Returns work's answer, or undefined.
export async function act(id, work) {
  if (busy) return undefined;
  busy = true;
  const button = id && document.getElementById(id);
  if (button) button.disabled = true;
  setError(null);
  try {
    return await work();
  } catch (failure) {
    setError(sentenceOf(w, failure));
    return undefined;
  } finally {
    busy = false;
    const again = id && document.getElementById(id);
    if (again) again.disabled = false;
  }
}

// A sentence the screen shows at once, before any request (a field left empty).
export function refuse(text) {
  setError(text);
  return undefined;
}

// The value typed in the field `id` ("" when it is not on screen).
export function valueOf(id) {
  const node = document.getElementById(id);
  return node ? node.value.trim() : "";
}

// A PIN typed by the resident on this PC: digits only, never shown.
export function pinField(id, label, hint) {
  return field(
    id,
    label,
    h("input", {
      id,
      type: "password",
      inputmode: "numeric",
      autocomplete: "off",
      maxlength: "6",
      pattern: "[0-9]*",
    }),
    hint,
  );
}

// Why staff act (audited): how the identity was checked, what happened.
export function reasonField(id, hint, value = "") {
  return field(
    id,
    w().reason,
    h("input", { id, type: "text", autocomplete: "off", maxlength: "500", value }),
    hint || w().reasonHint,
  );
}

// A PIN of 4 to 6 digits typed twice the same: the sentence if not, else null.
export function pinProblem(pin, again) {
  if (!/^[0-9]{4,6}$/.test(pin)) return w().pinShape;
  if (pin !== again) return w().pinsDiffer;
  return null;
}

// The resident at the counter, found by id, with their cards.
export async function loadResident(residentId) {
  const [found, cards] = await Promise.all([
    post("/api/v1/counter/residents/find", { resident_id: residentId }),
    get(`/api/v1/counter/residents/${encodeURIComponent(residentId)}/cards`),
  ]);
  const known = { ...found, cards };
  state.residents[residentId] = known;
  return known;
}

// The card the resident pays with: the active one, else none.
export function activeCard(known) {
  return (known.cards || []).find((card) => card.status === "active") || null;
}

// How the coming expiry reads: "300 pt（2027年3月31日）", or "なし".
export function expiryText(wallet) {
  const soon = wallet.expiring_soon;
  if (!soon) return w().none;
  return soon.valid_until ? w().expiringOn(money(soon.amount), day(soon.valid_until)) : money(soon.amount);
}

export function typeName(wallet) {
  return lang() === "ja" ? wallet.name_ja : wallet.name_en;
}

// A resident's name as shown (an erased resident has none).
export function nameOf(resident) {
  return resident.name || w().noName;
}

// The SVG of a printed card (GET .../cards/{id}/print answers image/svg+xml, not JSON), or of a
// sheet of cards when `body` is given (POST .../cards/print-sheet with that JSON body).
export async function svgText(path, body) {
  let response;
  const headers = { Accept: "image/svg+xml", "X-Points-Client": "staff" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  try {
    response = await fetch(path, {
      method: body === undefined ? "GET" : "POST",
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
    });
  } catch (error) {
    throw new Unreachable(error);
  }
  const type = response.headers.get("Content-Type") || "";
  if (response.ok && type.includes("svg")) return response.text();
  if (type.includes("json")) throw new Refused({ status: response.status, ...(await response.json()) });
  throw new Unreachable(new Error(`HTTP ${response.status}`));
}

// What was done, taken once by the next screen (kept by it: a redraw shows it again).
export function takeDone() {
  const done = state.done;
  state.done = null;
  return done;
}

// The line saying what was done (role=status): `done` is a function of the words, or null.
export function doneLine(done) {
  const text = done ? done() : "";
  return h("p", { id: "done", role: "status", class: text ? "done-line" : "done-line empty" }, text);
}
