// The finance PC's look into the records: every payment at the merchants (filtered by days and
// state, paged), and the audit trail of administrative acts with the runs of the scheduled jobs.
import { get } from "../../app/js/api.js";
import { errorLine, h, redraw } from "../../app/js/dom.js";
import { lang, money, moment, t } from "../../app/js/i18n.js";
import { desk, field, sentenceOf, table } from "./desk.js";
import { monthStart, tokyoToday, w } from "./finance-charts.js";

const FINANCE = "/api/v1/finance";
const STATES = ["", "pending", "posted", "partly_refunded", "refunded", "voided"];

// --- Payments ----------------------------------------------------------------------------------

export function paymentsScreen() {
  const today = tokyoToday();
  const state = { from: monthStart(today), to: today, state: "", items: [], next: null, loaded: false, error: null, busy: false };
  let screen = null;
  const load = async (more) => {
    if (state.busy) return;
    state.busy = true;
    if (!more) {
      state.items = [];
      state.next = null;
    }
    redraw(screen);
    const query = new URLSearchParams({ from: state.from, to: state.to, limit: "50" });
    if (state.state) query.set("state", state.state);
    if (more && state.next) query.set("cursor", state.next);
    try {
      const page = await get(`${FINANCE}/payments?${query}`);
      state.items = [...state.items, ...page.items];
      state.next = page.next_cursor;
      state.error = null;
    } catch (failure) {
      state.error = sentenceOf(w, failure);
    }
    state.loaded = true;
    state.busy = false;
    redraw(screen);
  };
  const set = (name) => (event) => {
    state[name] = event.target.value;
  };
  screen = desk(
    "finance-payments",
    () => [
      h("h1", {}, w().paymentsListTitle),
      h("p", { class: "quiet" }, w().paymentsListLead),
      h(
        "form",
        {
          id: "payments-form",
          class: "row",
          onsubmit: (event) => {
            event.preventDefault();
            load(false);
          },
        },
        field("payments-from", w().fromDay, h("input", { id: "payments-from", type: "date", required: true, value: state.from, onchange: set("from") })),
        field("payments-to", w().toDay, h("input", { id: "payments-to", type: "date", required: true, value: state.to, onchange: set("to") })),
        field(
          "payments-state",
          w().stateLabel,
          h(
            "select",
            { id: "payments-state", onchange: set("state") },
            STATES.map((value) => h("option", { value, selected: value === state.state }, value ? t().stateWord[value] || value : w().allStates)),
          ),
        ),
        h("button", { id: "payments-show", type: "submit", class: "button primary", disabled: state.busy }, w().show),
      ),
      errorLine(state.error),
      state.loaded &&
        table(
          "table-payments-list",
          [
            { label: w().paidAt, value: (row) => moment(row.created_at) },
            { label: w().merchant, value: (row) => (lang() === "ja" ? row.merchant_name_ja : row.merchant_name_en || row.merchant_name_ja) },
            { label: w().how, value: (row) => t().flowWord[row.flow] || row.flow },
            { label: w().stateLabel, value: (row) => t().stateWord[row.state] || row.state },
            { label: w().kind, key: "point_type" },
            { label: w().amount, numeric: true, value: (row) => money(row.amount) },
            { label: w().refunded, numeric: true, value: (row) => (row.refunded ? money(row.refunded) : "") },
            { label: w().resident, value: (row) => h("code", {}, row.resident_id) },
          ],
          state.items,
          { empty: w().noPayments },
        ),
      state.next && h("button", { id: "payments-more", type: "button", class: "button secondary", onclick: () => load(true), disabled: state.busy }, w().more),
    ],
    "payments",
  );
  load(false);
}

// --- Audit trail and job runs ------------------------------------------------------------------

// An act of the trail: its name in words with the stored name beside it (small, monospace, to
// search by); an act without a word is the stored name alone.
function actionCell(row) {
  const name = w().actionNames[row.action];
  const raw = h("code", { class: "raw-action" }, row.action);
  return name ? h("span", { class: "action-name" }, name, " ", raw) : raw;
}

export function auditScreen() {
  const state = { events: [], next: null, runs: null, error: null, busy: false };
  let screen = null;
  const loadEvents = async () => {
    if (state.busy) return;
    state.busy = true;
    redraw(screen);
    const query = new URLSearchParams({ limit: "50" });
    if (state.next) query.set("cursor", state.next);
    try {
      const page = await get(`${FINANCE}/audit?${query}`);
      state.events = [...state.events, ...page.items];
      state.next = page.next_cursor;
    } catch (failure) {
      state.error = sentenceOf(w, failure);
    }
    state.busy = false;
    redraw(screen);
  };
  const loadRuns = async () => {
    try {
      state.runs = (await get(`${FINANCE}/job-runs?limit=20`)).items;
    } catch (failure) {
      state.error = sentenceOf(w, failure);
    }
    redraw(screen);
  };
  screen = desk(
    "finance-audit",
    () => [
      h("h1", {}, w().auditTitle),
      errorLine(state.error),
      h(
        "section",
        { "aria-labelledby": "jobs-title" },
        h("h2", { id: "jobs-title" }, w().jobsTitle),
        h("p", { class: "quiet" }, w().jobsLead),
        state.runs &&
          table(
            "table-jobs",
            [
              { label: w().job, value: (row) => w().jobs[row.job] || row.job },
              // A run's period: a month, a day or a Tokyo minute ("2026-06-01T14:03", shown with a space).
              { label: w().period, value: (row) => String(row.period ?? "").replace(/^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2})$/, "$1 $2") },
              { label: w().startedAt, value: (row) => moment(row.started_at) },
              { label: w().stateLabel, value: (row) => w().jobRunState[row.state] || row.state },
              {
                label: w().counts,
                value: (row) =>
                  Object.entries(row.counts)
                    .map(([name, count]) => `${w().countWord[name] || name} ${Number(count).toLocaleString("en-US")}`)
                    .join(" ・ "),
              },
            ],
            state.runs,
            { empty: w().noJobs },
          ),
      ),
      h(
        "section",
        { "aria-labelledby": "audit-title" },
        h("h2", { id: "audit-title" }, w().auditTrailTitle),
        h("p", { class: "quiet" }, w().auditLead),
        table(
          "table-audit",
          [
            { label: w().sequence, numeric: true, key: "sequence" },
            { label: w().at, value: (row) => moment(row.at) },
            { label: w().actor, value: (row) => `${t().roleWord[row.actor_role] || row.actor_role} ${row.actor_id}` },
            { label: w().action, value: actionCell },
            { label: w().object, value: (row) => h("code", {}, row.object_id) },
            { label: w().reason, key: "reason" },
          ],
          state.events,
          { empty: w().noEvents },
        ),
        state.next && h("button", { id: "audit-more", type: "button", class: "button secondary", onclick: loadEvents, disabled: state.busy }, w().more),
      ),
    ],
    "audit",
  );
  loadRuns();
  loadEvents();
}
