// The shop's payment events, live: server-sent events from
// GET /api/v1/merchant/payment-events/stream, falling back to polling
// GET /api/v1/merchant/payment-events?after=N when the stream does not work (docs/payments.md).
//
// The app asks the polling route for the cursor first, then opens the stream after it, so an
// event between the two is never missed; each event moves the cursor, and polling goes on from
// it. A browser's EventSource reconnects by itself when the server ends a stream (within a
// minute) and resumes with Last-Event-ID. The shop's pending store-QR payments are kept here (the
// first list from today's payments), so any screen shows the banner and the incoming screen the
// list; a new one plays a sound.
import { Refused, get } from "../../app/js/api.js";
import { h } from "../../app/js/dom.js";
import { t } from "../../app/js/i18n.js";
import { beep, explain, state } from "./common.js";

const EVENTS = "/api/v1/merchant/payment-events";
const POLL_MS = 2000;
// Errors in a row, without a message, before the stream is given up for polling.
const STREAM_ERRORS_MAX = 3;

export const live = {
  // "off", "connecting", "stream", "poll"
  mode: "off",
  cursor: null,
  // The shop's store-QR payments awaiting confirmation, by id.
  pending: new Map(),
};

const listeners = new Set();
let source = null;
let timer = null;
let errors = 0;
let generation = 0;

// `listener(event)` for each payment event while the screen that asked is on screen (the caller
// removes it when it leaves: `onLeave(listen(...))`).
export function listen(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export async function startLive() {
  if (live.mode !== "off") return;
  const mine = ++generation;
  live.mode = "connecting";
  status();
  try {
    const [first, today] = await Promise.all([get(EVENTS), get("/api/v1/merchant/payments?limit=200")]);
    if (mine !== generation) return;
    live.cursor = first.cursor;
    live.pending.clear();
    for (const payment of today.items) {
      if (payment.state === "pending") live.pending.set(payment.id, payment);
    }
  } catch (failure) {
    if (mine !== generation) return;
    live.mode = "off";
    status();
    if (failure instanceof Refused && failure.problem.status === 401) return explain(failure);
    timer = setTimeout(() => startLive(), POLL_MS * 2);
    return;
  }
  banner();
  openStream(mine);
}

export function stopLive() {
  generation += 1;
  if (source) source.close();
  source = null;
  clearTimeout(timer);
  live.mode = "off";
  live.pending.clear();
  banner();
}

function openStream(mine) {
  if (!("EventSource" in window)) return poll(mine);
  errors = 0;
  let opened = false;
  source = new EventSource(`${EVENTS}/stream?after=${encodeURIComponent(live.cursor)}`);
  source.addEventListener("open", () => {
    opened = true;
    errors = 0;
    live.mode = "stream";
    status();
  });
  source.addEventListener("payment", (message) => {
    errors = 0;
    deliver(JSON.parse(message.data));
  });
  source.addEventListener("error", () => {
    errors += 1;
    // The browser reconnects by itself when a stream that worked ends. Polling takes over when
    // the stream never opened (a proxy that does not let it through), was refused (CLOSED: a
    // 401, say; polling's own 401 then sends the device back to enrolment), or fails again and
    // again.
    const givenUp = !opened || source.readyState === EventSource.CLOSED || errors >= STREAM_ERRORS_MAX;
    if (source && givenUp) {
      source.close();
      source = null;
      poll(mine);
    }
  });
}

async function poll(mine) {
  if (mine !== generation) return;
  live.mode = "poll";
  status();
  try {
    const page = await get(`${EVENTS}?after=${encodeURIComponent(live.cursor)}`);
    if (mine !== generation) return;
    for (const event of page.items) deliver(event);
    live.cursor = page.cursor;
  } catch (failure) {
    if (mine !== generation) return;
    if (failure instanceof Refused && failure.problem.status === 401) {
      explain(failure);
      return;
    }
    // No answer, or a refusal of the moment: the next poll tries again from the same cursor.
  }
  timer = setTimeout(() => poll(mine), POLL_MS);
}

function deliver(event) {
  if (live.cursor === null || event.id > live.cursor) live.cursor = event.id;
  const { payment } = event;
  const fresh = payment.state === "pending" && !live.pending.has(payment.id);
  if (payment.state === "pending") live.pending.set(payment.id, payment);
  else live.pending.delete(payment.id);
  if (event.kind === "created" && fresh) beep("incoming");
  banner();
  for (const listener of [...listeners]) listener(event);
}

// The line under the bar: payments to confirm, on every screen but the one that lists them.
export function banner() {
  const line = document.getElementById("banner");
  if (!line) return;
  const count = live.pending.size;
  const here = /^#\/incoming/.test(location.hash);
  if (!count || here || !state.session) {
    line.hidden = true;
    line.replaceChildren();
    return;
  }
  line.hidden = false;
  line.replaceChildren(h("a", { id: "banner-link", href: "#/incoming" }, t().banner(count)));
}

// Home's quiet line: whether the news of payments arrives.
export function status() {
  const line = document.getElementById("live-status");
  if (!line) return;
  line.textContent = liveText();
}

export function liveText() {
  if (live.mode === "stream") return t().liveOn;
  if (live.mode === "poll") return t().livePolling;
  if (live.mode === "connecting") return "";
  return t().liveOff;
}
