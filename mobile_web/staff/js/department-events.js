// A volunteering program's events: the list with attendance, a new event, closing one early
// (with a reason, confirmed first), and the check-in screen: the rotating QR as large as the
// screen allows (fetched again when its slot ends), the event's name and the attendance count
// (polled every 3 seconds), full screen on request, and the card check-in for residents without
// a phone.
import { Refused, get, newKey, post } from "../../app/js/api.js";
import { button, errorLine, h, link, onLeave, redraw, svgOf } from "../../app/js/dom.js";
import { money, moment } from "../../app/js/i18n.js";
import { clock, go } from "./common.js";
import { ISSUER, act, actFor, loadPrograms, nameOf, programChooser, tokyoToday, w, why } from "./department-common.js";
import { desk, field, table } from "./desk.js";

// The event token's slot (points/qrtokens.py SLOT_SECONDS).
const SLOT_SECONDS = 30;

function input(id, value, onInput, extra = {}) {
  return h("input", { id, value: value ?? "", oninput: (event) => onInput(event.target.value), ...extra });
}

// A Tokyo date and time as an instant the API takes.
function instant(date, time) {
  return `${date}T${time}:00+09:00`;
}

export function eventsScreen(detail) {
  const state = {
    programs: null,
    programId: detail || "",
    events: null,
    error: null,
    notice: null,
    form: { name: "", place: "", date: tokyoToday(), start: "09:00", end: "12:00", capacity: "50" },
    creating: false,
    busy: false,
    closing: null,
    reason: "",
    refresh: () => redraw(screen),
  };
  let screen = null;
  const path = () => `${ISSUER}/programs/${encodeURIComponent(state.programId)}/events`;
  const loadEvents = async () => {
    try {
      state.events = await get(path());
    } catch (failure) {
      state.error = why(failure);
    }
    redraw(screen);
  };
  const actions = {
    choose(id) {
      go(`#/events/${encodeURIComponent(id)}`);
    },
    openForm() {
      state.creating = true;
      state.notice = null;
      redraw(screen);
    },
    async create() {
      if (state.busy) return;
      const f = state.form;
      state.error = null;
      const capacity = Number(f.capacity);
      if (!f.name.trim() || !f.place.trim()) state.error = w().eventNameMissing;
      else if (!f.date || !f.start || !f.end || f.end <= f.start) state.error = w().eventTimesInvalid;
      else if (!Number.isInteger(capacity) || capacity < 1) state.error = w().capacityInvalid;
      if (state.error) return redraw(screen);
      const starts = instant(f.date, f.start);
      const ends = instant(f.date, f.end);
      const opens = new Date(new Date(starts).getTime() - 30 * 60 * 1000).toISOString();
      return act(state, async () => {
        const made = await post(path(), {
          name: f.name.trim(),
          place: f.place.trim(),
          starts_at: starts,
          ends_at: ends,
          opens_at: opens,
          closes_at: ends,
          capacity,
        });
        state.creating = false;
        state.notice = w().eventMade(made.name);
        state.form = { ...state.form, name: "", place: "" };
        await loadEvents();
      });
    },
    askClose(id) {
      state.closing = id;
      state.reason = "";
      state.notice = null;
      redraw(screen);
    },
    keepOpen() {
      state.closing = null;
      redraw(screen);
    },
    close() {
      return actFor(state, state.reason, async (reason) => {
        const closed = await post(`${ISSUER}/events/${encodeURIComponent(state.closing)}/close`, { reason });
        state.closing = null;
        state.notice = w().eventClosedNotice(closed.name);
        await loadEvents();
      });
    },
  };
  screen = desk("department-events", () => drawEvents(state, actions), "events");
  (async () => {
    try {
      state.programs = (await loadPrograms()).filter((item) => item.module === "volunteering");
      if (!state.programId && state.programs.length === 1) state.programId = state.programs[0].id;
    } catch (failure) {
      state.error = why(failure);
    }
    if (state.programs && state.programs.some((item) => item.id === state.programId)) await loadEvents();
    else redraw(screen);
  })();
}

function eventForm(state, actions) {
  const f = state.form;
  return h(
    "section",
    { class: "event-form", "aria-labelledby": "event-form-title" },
    h("h2", { id: "event-form-title" }, w().newEvent),
    h(
      "div",
      { class: "row" },
      field("event-name", w().eventName, input("event-name", f.name, (v) => (f.name = v), { maxlength: "100" })),
      field("event-place", w().place, input("event-place", f.place, (v) => (f.place = v), { maxlength: "100" })),
    ),
    h(
      "div",
      { class: "row" },
      field("event-date", w().eventDate, input("event-date", f.date, (v) => (f.date = v), { type: "date" })),
      field("event-start", w().startTime, input("event-start", f.start, (v) => (f.start = v), { type: "time" })),
      field("event-end", w().endTime, input("event-end", f.end, (v) => (f.end = v), { type: "time" })),
      field("event-capacity", w().capacity, input("event-capacity", f.capacity, (v) => (f.capacity = v), { type: "number", min: "1", max: "100000", inputmode: "numeric" })),
    ),
    h("p", { class: "hint" }, w().windowHint),
    h(
      "div",
      { class: "row" },
      h("button", { id: "event-create", type: "button", class: "button primary", disabled: state.busy, onclick: actions.create }, w().createEvent),
    ),
  );
}

function drawEvents(state, actions) {
  const chosen = (state.programs || []).find((item) => item.id === state.programId);
  const head = [h("h1", {}, w().eventsTitle), h("p", { class: "quiet" }, w().eventsIntro)];
  if (!state.programs) return [...head, errorLine(state.error), h("p", { class: "quiet" }, w().loading)];
  if (!state.programs.length) return [...head, errorLine(state.error), h("p", { id: "no-volunteering" }, w().noVolunteering)];
  const chooser = programChooser("events-program", state.programs, state.programId, actions.choose);
  if (!chosen) return [...head, chooser, errorLine(state.error)];
  const pid = encodeURIComponent(chosen.id);
  const closingEvent = (state.events || []).find((item) => item.id === state.closing);
  return [
    ...head,
    chooser,
    h("p", {}, w().perAttendance(money(chosen.amount))),
    state.notice && h("p", { id: "events-notice", class: "staff-line", role: "status" }, state.notice),
    errorLine(state.error),
    closingEvent &&
      h(
        "section",
        { class: "warning close-event", "aria-labelledby": "close-title" },
        h("h2", { id: "close-title" }, w().closeTitle(closingEvent.name)),
        h("p", {}, w().closeText),
        h(
          "div",
          { class: "row" },
          field("close-reason", w().reasonLabel, input("close-reason", state.reason, (v) => (state.reason = v), { maxlength: "200" })),
          h("button", { id: "close-confirm", type: "button", class: "button danger", disabled: state.busy, onclick: actions.close }, w().closeNow),
          h("button", { id: "close-keep", type: "button", class: "button secondary", disabled: state.busy, onclick: actions.keepOpen }, w().keepOpen),
        ),
      ),
    h("h2", {}, w().eventsList),
    state.events
      ? table(
          "events",
          [
            { label: w().eventName, value: (event) => h("span", { "data-event": event.id }, event.name) },
            { label: w().place, value: (event) => event.place },
            { label: w().when, value: (event) => `${moment(event.starts_at)}–${clock(event.ends_at)}` },
            { label: w().checkInWindow, value: (event) => h("span", { class: "nowrap" }, `${clock(event.opens_at)}–${clock(event.closes_at)}`) },
            { label: w().attendance, value: (event) => w().attendanceOf(event.attendance, event.capacity), numeric: true },
            { label: w().status, value: (event) => h("span", { class: "nowrap" }, w().eventStatus[event.status] || event.status) },
            {
              label: w().actions,
              value: (event) =>
                event.status === "open"
                  ? h(
                      "div",
                      { class: "row" },
                      link(`checkin-${event.id}`, w().openCheckIn, `#/checkin/${pid}/${encodeURIComponent(event.id)}`),
                      h("button", { id: `close-${event.id}`, type: "button", class: "button danger", "aria-label": w().closeEarlyOf(event.name), onclick: () => actions.askClose(event.id) }, w().closeEarly),
                    )
                  : event.closed_reason || "",
            },
          ],
          state.events,
          { empty: w().noEvents },
        )
      : h("p", { class: "quiet" }, w().loading),
    state.creating ? eventForm(state, actions) : h("div", { class: "row" }, button("new-event", w().newEvent, actions.openForm, "secondary")),
  ];
}

// --- The check-in screen ---------------------------------------------------------------------

export function checkInScreen(detail) {
  const [programId, eventId] = (detail || "").split("/");
  const state = { event: null, qr: null, attendance: null, error: null, card: "", cardKey: null, cardBusy: false, cardResult: null, cardError: null };
  let timer = null;
  let poller = null;
  let ticker = null;
  let left = 0;
  let gone = false;
  document.body.classList.add("checkin-full");
  onLeave(() => {
    gone = true;
    clearTimeout(timer);
    clearInterval(poller);
    clearInterval(ticker);
    document.body.classList.remove("checkin-full");
    if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
  });
  const put = (id, text) => {
    const node = document.getElementById(id);
    if (node) node.textContent = text;
  };
  const refresh = async () => {
    if (gone) return;
    try {
      state.qr = await get(`${ISSUER}/events/${encodeURIComponent(eventId)}/check-in`);
      // A token is accepted until the end of the slot after its own (`seconds_left`); the
      // screen shows the new slot's token as soon as it starts, so a scan never meets the end.
      left = Math.max(1, state.qr.seconds_left - SLOT_SECONDS);
      const box = document.getElementById("checkin-qr");
      if (box) {
        box.replaceChildren(svgOf(state.qr.svg));
        box.dataset.token = state.qr.token;
      } else redraw(screen);
      put("checkin-seconds", w().secondsLeft(left));
      state.error = null;
      timer = setTimeout(refresh, left * 1000 + 300);
    } catch (failure) {
      state.error = why(failure);
      redraw(screen);
      if (!(failure instanceof Refused)) timer = setTimeout(refresh, 5000);
    }
  };
  const poll = async () => {
    try {
      const seen = await get(`${ISSUER}/events/${encodeURIComponent(eventId)}/attendance`);
      if (seen.attendance !== state.attendance) {
        state.attendance = seen.attendance;
        put("checkin-count", w().people(seen.attendance));
      }
    } catch (failure) {
      if (failure instanceof Refused) state.error = why(failure);
    }
  };
  const actions = {
    full() {
      const root = document.documentElement;
      if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
      else if (root.requestFullscreen) root.requestFullscreen().catch(() => {});
    },
    async card() {
      if (state.cardBusy) return;
      const text = state.card.trim();
      state.cardError = null;
      state.cardResult = null;
      if (!text) {
        state.cardError = w().cardMissing;
        return redraw(screen);
      }
      const body = /^[\d\s-]+$/.test(text) ? { card_number: text.replace(/[\s-]/g, "") } : { card_qr: text };
      state.cardKey = state.cardKey || newKey();
      state.cardBusy = true;
      redraw(screen);
      try {
        const done = await post(`${ISSUER}/events/${encodeURIComponent(eventId)}/card-check-ins`, body, state.cardKey);
        state.cardKey = null;
        state.card = "";
        state.cardResult = done.replayed ? w().cardAgain : w().cardDone(money(done.amount));
        poll();
      } catch (failure) {
        if (failure instanceof Refused) state.cardKey = null;
        state.cardError = why(failure);
      }
      state.cardBusy = false;
      redraw(screen);
      const again = document.getElementById("card-number");
      if (again) again.focus();
    },
  };
  const screen = desk("department-checkin", () => drawCheckIn(state, actions, programId), "events");
  ticker = setInterval(() => {
    if (left > 0) left -= 1;
    put("checkin-seconds", w().secondsLeft(left));
  }, 1000);
  (async () => {
    try {
      const list = await get(`${ISSUER}/programs/${encodeURIComponent(programId)}/events`);
      state.event = list.find((item) => item.id === eventId) || null;
      if (!state.event) state.error = w().problems.not_found;
      else state.attendance = state.event.attendance;
    } catch (failure) {
      state.error = why(failure);
    }
    redraw(screen);
    if (state.event) {
      refresh();
      poller = setInterval(poll, 3000);
    }
  })();
}

function drawCheckIn(state, actions, programId) {
  const event = state.event;
  const back = link("checkin-leave", w().leaveCheckIn, `#/events/${encodeURIComponent(programId || "")}`);
  if (!event) return [h("h1", {}, w().checkInTitle), errorLine(state.error), back];
  return [
    h("h1", { id: "checkin-name" }, event.name),
    h(
      "div",
      { class: "checkin" },
      h(
        "div",
        { class: "checkin-qr-side" },
        h("p", { class: "checkin-say" }, w().scanToCheckIn),
        h("div", { id: "checkin-qr", class: "checkin-qr", role: "img", "aria-label": w().qrLabel, "data-token": state.qr ? state.qr.token : null }, state.qr ? svgOf(state.qr.svg) : null),
        h("p", { id: "checkin-seconds", class: "quiet" }, state.qr ? w().secondsLeft(Math.max(1, state.qr.seconds_left - SLOT_SECONDS)) : w().loading),
      ),
      h(
        "div",
        { class: "checkin-info" },
        h("p", { class: "checkin-place" }, `${event.place} ・ ${clock(event.starts_at)}–${clock(event.ends_at)}`),
        h("p", { class: "checkin-count-label" }, w().attendanceNow),
        h("p", { id: "checkin-count", class: "checkin-count", "aria-live": "polite" }, w().people(state.attendance ?? event.attendance)),
        h("p", {}, w().capacityIs(event.capacity), " ・ ", w().perAttendance(money(event.points_per_attendance))),
        errorLine(state.error),
        h(
          "section",
          { class: "card-check-in", "aria-labelledby": "card-title" },
          h("h2", { id: "card-title" }, w().cardTitle),
          h(
            "div",
            { class: "row" },
            field("card-number", w().cardNumber, input("card-number", state.card, (v) => (state.card = v), { autocomplete: "off", maxlength: "400" }), w().cardHint),
            h("button", { id: "card-check-in", type: "button", class: "button primary", disabled: state.cardBusy, onclick: actions.card }, w().cardCheckIn),
          ),
          state.cardResult && h("p", { id: "card-result", class: "staff-line", role: "status" }, state.cardResult),
          state.cardError && h("p", { id: "card-error", class: "error", role: "alert" }, state.cardError),
        ),
        h("div", { class: "row" }, button("full-screen", w().fullScreen, actions.full, "secondary"), back),
      ),
    ),
  ];
}
