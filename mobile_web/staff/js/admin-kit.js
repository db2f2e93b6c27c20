// What the admin PC's screens share: their words, a refusal as a sentence (a refused field named),
// form controls that keep what was typed in the screen's state (a screen is drawn again when the
// language changes or an answer arrives), one act at a time, and a confirmation with a reason
// before an act that cannot be undone.
import { Refused } from "../../app/js/api.js";
import { button, h, redraw } from "../../app/js/dom.js";
import { day, lang, moment } from "../../app/js/i18n.js";
import { desk, field, sentenceOf, words } from "./desk.js";
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

// A screen of the admin PC: `draw(s)` reads the state `s` ({error, busy, confirm, form, ...});
// `s.refresh()` draws it again while it is on screen.
export function screenOf(name, route, draw, state = {}) {
  const s = { error: null, busy: false, confirm: null, form: {}, ...state };
  let owner = null;
  s.refresh = () => redraw(owner);
  owner = desk(name, () => draw(s), route);
  return s;
}

// Run one act (never two at once: the buttons are disabled while busy); a failure is the screen's
// error line. Answers true when the act succeeded.
export async function act(s, work) {
  if (s.busy) return false;
  s.busy = true;
  s.error = null;
  s.done = null;
  s.refresh();
  let done = false;
  try {
    await work();
    done = true;
  } catch (failure) {
    s.error = say(failure);
  } finally {
    s.busy = false;
    s.refresh();
  }
  return done;
}

// A button of this screen: disabled while an act runs.
export function press(s, id, label, onclick, kind = "primary", extra = {}) {
  const node = button(id, label, onclick, kind);
  if (s.busy) node.disabled = true;
  for (const [name, value] of Object.entries(extra)) node.setAttribute(name, value);
  return node;
}

// A text input bound to s.form[key].
export function input(s, id, label, key, attributes = {}, hint) {
  const control = h("input", {
    id,
    name: key,
    type: "text",
    autocomplete: "off",
    ...attributes,
    oninput: (event) => {
      s.form[key] = event.target.value;
    },
  });
  control.value = s.form[key] ?? "";
  return field(id, label, control, hint);
}

// A select bound to s.form[key]: options are [value, label].
export function choose(s, id, label, key, options, hint) {
  if (s.form[key] === undefined && options.length) s.form[key] = options[0][0];
  const control = h(
    "select",
    {
      id,
      name: key,
      onchange: (event) => {
        s.form[key] = event.target.value;
      },
    },
    options.map(([value, text]) => h("option", { value, selected: value === s.form[key] }, text)),
  );
  return field(id, label, control, hint);
}

// The confirmation of an irreversible act: s.confirm = { title, detail, yes, run(reason) }.
export function confirmBox(s) {
  const ask = s.confirm;
  if (!ask) return null;
  return h(
    "div",
    { id: "confirm", class: "confirm", role: "group", "aria-labelledby": "confirm-title" },
    h("h2", { id: "confirm-title" }, ask.title),
    ask.detail && h("p", { id: "confirm-detail" }, ask.detail),
    !ask.noReason && input(s, "confirm-reason", w().reason, "confirmReason", {}, w().reasonHint),
    h(
      "div",
      { class: "row" },
      press(s, "confirm-yes", ask.yes, async () => {
        const reason = (s.form.confirmReason || "").trim();
        if (!reason && !ask.noReason) {
          s.error = w().reasonMissing;
          s.refresh();
          return;
        }
        const done = await act(s, () => ask.run(reason));
        if (done) {
          s.confirm = null;
          s.form.confirmReason = "";
          s.refresh();
        }
      }, "danger"),
      press(s, "confirm-no", w().cancel, () => {
        s.confirm = null;
        s.error = null;
        s.refresh();
      }, "secondary"),
    ),
  );
}

// Ask before `run(reason)`; the box sits where the screen draws confirmBox(s).
export function ask(s, title, yes, run, detail, noReason = false) {
  s.confirm = { title, yes, run, detail, noReason };
  s.error = null;
  s.done = null;
  s.refresh();
  requestAnimationFrame(() => {
    const box = document.getElementById("confirm");
    box?.scrollIntoView({ block: "nearest" });
    document.getElementById(noReason ? "confirm-yes" : "confirm-reason")?.focus();
  });
}

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

// Every item of a paged list (next_cursor), up to `most`.
export async function everything(getPage, path, most = 1000) {
  const items = [];
  let cursor = null;
  do {
    const query = new URLSearchParams({ limit: "200" });
    if (cursor) query.set("cursor", cursor);
    const page = await getPage(`${path}?${query}`);
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && items.length < most);
  return items;
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
