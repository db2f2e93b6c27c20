// What the admin PC's screens share: their words, a refusal as a sentence (a refused field named),
// form controls that keep what was typed in the screen's state (a screen is drawn again when the
// language changes or an answer arrives), one act at a time, and a confirmation with a reason
// before an act that cannot be undone.
import { Refused } from "../../app/js/api.js";
import { h } from "../../app/js/dom.js";
import { day, lang, moment } from "../../app/js/i18n.js";
import { sentenceOf, words } from "./desk.js";
import { choose, everything, input, kitOf, press, screenOf } from "./desk-kit.js";
import table from "./words-admin.js";

export const w = words(table);

// A failed request as a sentence; a validation_error names the fields the API refused.
export function say(failure) {
  if (failure instanceof Refused && failure.problem.code === "validation_error") {
    const names = [];
    for (const error of failure.problem.errors || []) {
      const key = (error.location || []).filter((part) => part !== "body" && !/^[0-9]+$/.test(part)).pop();
      const name = key && w().fieldNames[key];
      if (name && !names.includes(name)) names.push(name);
    }
    if (names.length) return w().fieldsRefused(names.join(w().listJoin));
  }
  if (failure instanceof Refused && ["bank_details_invalid"].includes(failure.problem.code)) {
    const name = w().fieldNames[failure.problem.field];
    if (name) return w().bankInvalidField(name);
  }
  return sentenceOf(w, failure);
}

// The office roles' kit (desk-kit.js) in the admin's words: a screen, one act at a time, a load,
// buttons and form controls, the confirmation with a reason.
export { choose, everything, input, press, screenOf };
export const { act, actFor, load, confirmBox, ask } = kitOf(w, say);

// A name in the language on screen.
export function nameOf(thing) {
  if (!thing) return "";
  return lang() === "en" ? thing.name_en || thing.name_ja : thing.name_ja;
}

export function statusWord(status) {
  return w().statusWords[status] || status;
}

export function when(iso) {
  return iso ? moment(iso) : "";
}

export function dayOf(iso) {
  return iso ? day(iso) : "";
}

// A device code just made (POST /api/v1/admin/device-codes): the code large, its QR for the
// device's camera, what it enrols and until when it is valid (15 minutes, once).
export function codePanel(made, svgOf) {
  if (!made) return null;
  return h(
    "div",
    { id: "device-code-panel", class: "device-code" },
    h("h2", {}, w().codeTitle(made.label)),
    h("p", { class: "label" }, w().codeLabel),
    h("p", { id: "device-code", class: "huge mono" }, made.code),
    h("div", { id: "device-code-qr", class: "code-qr", role: "img", "aria-label": w().codeQr }, svgOf(made.qr_svg)),
    h("p", { id: "device-code-until" }, w().codeUntil(moment(made.expires_at))),
    h("p", { class: "hint" }, w().codeHow),
  );
}
