// What every office role's screens share (a role's words `w` and its failure sentence `say` make
// a kit: `kitOf(w, say)`): a screen's state drawn again on `s.refresh()`, one act at a time (a
// failure is the screen's error line), a load (the first answers, then the screen drawn), buttons
// disabled while an act runs, form controls that keep what was typed in `s.form`, and a
// confirmation with a reason before an act that cannot be undone. Imported by the office roles'
// modules only (a till never loads it).
import { button, h, redraw } from "../../app/js/dom.js";
import { desk, field } from "./desk.js";

// A screen: `draw(s)` reads the state `s` ({error, busy, confirm, form, ...}); `s.refresh()` draws
// it again while it is on screen.
export function screenOf(name, route, draw, state = {}) {
  const s = { error: null, busy: false, confirm: null, form: {}, ...state };
  let owner = null;
  s.refresh = () => redraw(owner);
  owner = desk(name, () => draw(s), route);
  return s;
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

// Every item of a paged list (next_cursor), up to `most`; `path` may hold a query of its own.
export async function everything(getPage, path, most = 1000) {
  const items = [];
  let cursor = null;
  do {
    const query = new URLSearchParams({ limit: "200" });
    if (cursor) query.set("cursor", cursor);
    const page = await getPage(`${path}${path.includes("?") ? "&" : "?"}${query}`);
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && items.length < most);
  return items;
}

// The role's kit: its words `w` (reason, reasonHint, reasonMissing, cancel) and `say(failure)`.
export function kitOf(w, say) {
  // Run one act (never two at once: the buttons are disabled while busy); a failure is the
  // screen's error line (`failed(failure)` sees it first and may answer the sentence). Answers
  // true when the act succeeded.
  async function act(s, work, failed) {
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
      s.error = (failed && failed(failure)) || say(failure);
    } finally {
      s.busy = false;
      s.refresh();
    }
    return done;
  }

  // An act that needs a reason (`work(reason)`, the reason trimmed): none written is the error.
  async function actFor(s, reason, work, failed) {
    if (s.busy) return false;
    const why = (reason || "").trim();
    if (!why) {
      s.error = w().reasonMissing;
      s.refresh();
      return false;
    }
    return act(s, () => work(why), failed);
  }

  // A screen's first answers: a failure is the error line; then not busy, drawn again.
  async function load(s, work) {
    try {
      await work();
    } catch (failure) {
      s.error = say(failure);
    }
    s.busy = false;
    s.refresh();
  }

  // The confirmation of an irreversible act: s.confirm = { title, detail, yes, run(reason) }.
  function confirmBox(s) {
    const asked = s.confirm;
    if (!asked) return null;
    return h(
      "div",
      { id: "confirm", class: "confirm", role: "group", "aria-labelledby": "confirm-title" },
      h("h2", { id: "confirm-title" }, asked.title),
      asked.detail && h("p", { id: "confirm-detail" }, asked.detail),
      !asked.noReason && input(s, "confirm-reason", w().reason, "confirmReason", {}, w().reasonHint),
      h(
        "div",
        { class: "row" },
        press(s, "confirm-yes", asked.yes, async () => {
          const reason = s.form.confirmReason;
          const done = asked.noReason ? await act(s, () => asked.run((reason || "").trim())) : await actFor(s, reason, asked.run);
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
  function ask(s, title, yes, run, detail, noReason = false) {
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

  return { act, actFor, load, confirmBox, ask };
}
