// The finance PC's screens: home (the ledger's last verification, a new one queued and followed,
// the headline figures and this month's settlement), reports (finance-reports.js), exports of the
// ledger, settlement (finance-settlement.js; one statement and its recovery, finance-statement.js),
// payments and the audit trail (finance-ledger.js).
import { get, post } from "../../app/js/api.js";
import { errorLine, h, link, onLeave, onScreen, redraw, setError } from "../../app/js/dom.js";
import { money, moment } from "../../app/js/i18n.js";
import { desk, field, sentenceOf, sums } from "./desk.js";
import { monthName, monthStart, tokyoToday, w } from "./finance-charts.js";
import { auditScreen, paymentsScreen } from "./finance-ledger.js";
import { reportsScreen } from "./finance-reports.js";
import { runScreen, settlementScreen } from "./finance-settlement.js";
import { statementScreen } from "./finance-statement.js";

const FINANCE = "/api/v1/finance";

export const menu = [
  { route: "home", label: () => w().home },
  { route: "reports", label: () => w().reports },
  { route: "exports", label: () => w().exports },
  { route: "settlement", label: () => w().settlement },
  { route: "payments", label: () => w().payments },
  { route: "audit", label: () => w().audit },
];

// --- Home --------------------------------------------------------------------------------------

// What to do about last month's settlement: the latest run and what it still needs.
function settlementTask(run, lastPeriod) {
  if (!run || run.period < lastPeriod) return { id: "task-wait", text: w().taskWait(monthName(lastPeriod)) };
  if (!run.file_made_at) return { id: "task-file", text: w().taskFile(monthName(run.period)), run };
  if (!run.paid_on) return { id: "task-paid", text: w().taskPaid(monthName(run.period)), run };
  return { id: "task-done", text: w().taskDone(monthName(run.period)), run };
}

function homeScreen() {
  const today = tokyoToday();
  const state = {
    last: null,
    lastMissing: false,
    outstanding: null,
    payments: null,
    run: undefined,
    verify: null,
    busy: false,
    error: null,
  };
  let screen = null;
  const fail = (failure) => {
    state.error = sentenceOf(w, failure);
  };
  const loadLast = async () => {
    try {
      state.last = await get(`${FINANCE}/verify/last`);
      state.lastMissing = false;
    } catch (failure) {
      if (failure.problem && failure.problem.status === 404) state.lastMissing = true;
      else fail(failure);
    }
  };
  const load = async () => {
    const from = monthStart(today);
    await Promise.all([
      loadLast(),
      get(`${FINANCE}/reports/outstanding?date=${today}`)
        .then((report) => {
          state.outstanding = report.rows.reduce((sum, row) => sum + row.points, 0);
        })
        .catch(fail),
      get(`${FINANCE}/reports/payments-by-merchant?from=${from}&to=${today}`)
        .then((report) => {
          state.payments = {
            count: report.rows.reduce((sum, row) => sum + row.payments, 0),
            net: report.rows.reduce((sum, row) => sum + row.net, 0),
          };
        })
        .catch(fail),
      get(`${FINANCE}/settlement-runs?limit=1`)
        .then((page) => {
          state.run = page.items[0] || null;
        })
        .catch(fail),
    ]);
    redraw(screen);
  };
  let timer = null;
  onLeave(() => clearTimeout(timer));
  const follow = async (id) => {
    try {
      state.verify = await get(`${FINANCE}/job-runs/${id}`);
    } catch (failure) {
      fail(failure);
      state.busy = false;
      redraw(screen);
      return;
    }
    if (state.verify.state === "running" || state.verify.state === "queued") {
      redraw(screen);
      if (onScreen(screen)) timer = setTimeout(() => follow(id), 1000);
      return;
    }
    state.busy = false;
    await loadLast();
    redraw(screen);
  };
  const verify = async () => {
    if (state.busy) return;
    state.busy = true;
    state.error = null;
    state.verify = { state: "running" };
    redraw(screen);
    try {
      const queued = await post(`${FINANCE}/verify-runs`);
      follow(queued.run_id);
    } catch (failure) {
      fail(failure);
      state.busy = false;
      state.verify = null;
      redraw(screen);
    }
  };
  const lastPeriod = monthStart(today, -1).slice(0, 7);
  screen = desk("finance-home", () => {
    const task = state.run === undefined ? null : settlementTask(state.run, lastPeriod);
    return [
      h("h1", {}, w().homeTitle),
      h("p", { class: "quiet" }, w().homeLead),
      errorLine(state.error),
      h(
        "section",
        { "aria-labelledby": "todo-title", class: "finance-card" },
        h("h2", { id: "todo-title" }, w().todoTitle),
        task && h("p", { id: task.id, class: "task" }, task.text),
        task && task.run && link("todo-run", w().openRun, `#/settlement/${encodeURIComponent(task.run.id)}`),
        link("todo-reports", w().openReports, "#/reports"),
      ),
      h(
        "section",
        { "aria-labelledby": "figures-title" },
        h("h2", { id: "figures-title" }, w().figuresTitle),
        sums("figures", [
          [w().outstandingToday, state.outstanding === null ? "…" : money(state.outstanding)],
          [
            w().paymentsThisMonth(monthName(today.slice(0, 7))),
            state.payments === null ? "…" : `${money(state.payments.net)} (${w().count(state.payments.count)})`,
          ],
        ]),
      ),
      h(
        "section",
        { "aria-labelledby": "verify-title" },
        h("h2", { id: "verify-title" }, w().verifyTitle),
        h("p", { class: "quiet" }, w().verifyLead),
        lastVerify(state),
        h(
          "div",
          { class: "row" },
          h(
            "button",
            { id: "verify-run", type: "button", class: "button primary", onclick: verify, disabled: state.busy },
            state.busy ? w().verifyRunning : w().verifyRun,
          ),
        ),
        state.verify &&
          h(
            "p",
            { id: "verify-state", role: "status", class: `verify-${state.verify.state}` },
            w().jobState[state.verify.state] || state.verify.state,
          ),
      ),
    ];
  }, "home");
  load();
}

function lastVerify(state) {
  if (state.lastMissing) return h("p", { id: "verify-last", class: "verify-none" }, w().verifyNever);
  const last = state.last;
  if (!last) return h("p", { id: "verify-last" }, "…");
  return h(
    "div",
    { id: "verify-last" },
    h("p", { id: "verify-verdict", class: last.ok ? "verify-ok" : "verify-bad" }, last.ok ? w().verifyOk : w().verifyBad(last.problems.length)),
    sums("verify-sums", [
      [w().verifiedAt, moment(last.at)],
      [w().entries, last.entries.toLocaleString("en-US")],
      [w().sealed, last.sealed.toLocaleString("en-US")],
      [w().unsealed, last.unsealed.toLocaleString("en-US")],
    ]),
    last.problems.length > 0 &&
      h(
        "ul",
        { id: "verify-problems" },
        last.problems.slice(0, 20).map((problem) => h("li", {}, problem.message)),
      ),
  );
}

// --- Exports -----------------------------------------------------------------------------------

const FORMATS = ["csv", "csv-cp932", "jsonl", "hledger"];

function exportsScreen() {
  const today = tokyoToday();
  const state = { format: "csv", from: monthStart(today, -1), to: today };
  const href = () => {
    const query = new URLSearchParams({ format: state.format, from: state.from, to: state.to });
    return `${FINANCE}/exports?${query}`;
  };
  const update = (name) => (event) => {
    state[name] = event.target.value;
    const anchor = document.getElementById("export-download");
    if (anchor) anchor.href = href();
    setError(state.from && state.to && state.from <= state.to ? null : w().exportRangeWrong);
  };
  // A range the API refuses downloads its refusal: the link does nothing then, the line says why.
  const guard = (event) => {
    if (!state.from || !state.to || state.from > state.to) {
      event.preventDefault();
      setError(w().exportRangeWrong);
    }
  };
  desk("finance-exports", () => [
    h("h1", {}, w().exportsTitle),
    h("p", { class: "quiet" }, w().exportsLead),
    h(
      "div",
      { class: "row" },
      field(
        "export-format",
        w().format,
        h(
          "select",
          { id: "export-format", onchange: update("format") },
          FORMATS.map((format) => h("option", { value: format, selected: format === state.format }, w().formats[format])),
        ),
      ),
      field("export-from", w().fromDay, h("input", { id: "export-from", type: "date", value: state.from, onchange: update("from") })),
      field("export-to", w().toDay, h("input", { id: "export-to", type: "date", value: state.to, onchange: update("to") })),
    ),
    h("p", { class: "hint", id: "export-hint" }, w().exportsHint),
    errorLine(null),
    h("a", { id: "export-download", class: "button primary", href: href(), download: "", onclick: guard }, w().download),
  ], "exports");
}

export const routes = {
  home: homeScreen,
  reports: reportsScreen,
  exports: exportsScreen,
  settlement: (detail) => (detail ? runScreen(detail) : settlementScreen()),
  payments: paymentsScreen,
  audit: auditScreen,
  statement: statementScreen,
};
