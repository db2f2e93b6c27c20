// The finance PC's settlement: the monthly runs, the plan of a month (a dry run), and one run
// with its statements and totals, its Zengin transfer file (made after a confirmation, then
// downloaded), its transfers (one the bank returned marked so), and the run marked paid.
//
// Making the file keeps its Idempotency-Key until a definite answer: a double click or a retry
// after a cut connection never makes it twice.
import { Refused, get, newKey, post } from "../../app/js/api.js";
import { errorLine, h, link, redraw } from "../../app/js/dom.js";
import { day, lang, money, moment } from "../../app/js/i18n.js";
import { desk, field, sentenceOf, sums, table } from "./desk.js";
import { act, monthEnd, monthName, monthStart, tokyoToday, w } from "./finance-charts.js";

const FINANCE = "/api/v1/finance";

// A refusal already put as a sentence of this screen's own.
class Notice extends Error {}

// A merchant's name on screen, from the run's statements (its id when none names it).
function nameOf(statements, merchantId) {
  const statement = statements.find((item) => item.merchant_id === merchantId);
  if (!statement) return merchantId;
  return lang() === "ja" ? statement.merchant_name_ja : statement.merchant_name_en || statement.merchant_name_ja;
}

// A date (or month) input that keeps its value in state[key].
function dateInput(id, type, state, key) {
  return h("input", {
    id,
    type,
    required: true,
    value: state[key],
    onchange: (event) => {
      state[key] = event.target.value;
    },
  });
}

function runState(run) {
  if (run.paid_on) return w().runPaid(day(run.paid_on));
  if (run.file_made_at) return w().runFileMade;
  return w().runOpen;
}

function totalsOf(id, totals) {
  return sums(id, [
    [w().statementCount, totals.statements.toLocaleString("en-US")],
    [w().settlePoints, money(totals.points)],
    [w().yen, w().yenOf(totals.yen)],
    [w().fee, w().yenOf(totals.fee)],
    [w().yenToPay, w().yenOf(totals.yen_to_pay)],
  ]);
}

function statementColumns(withLinks) {
  const columns = [
    { label: w().merchant, value: (row) => (lang() === "ja" ? row.merchant_name_ja : row.merchant_name_en || row.merchant_name_ja) },
    { label: w().pointType, key: "point_type" },
    { label: w().paymentCount, numeric: true, key: "payment_count" },
    { label: w().net, numeric: true, value: (row) => money(row.net_points) },
    { label: w().settlePoints, numeric: true, value: (row) => money(row.settle_points) },
    { label: w().yenToPay, numeric: true, value: (row) => w().yenOf(row.yen_to_pay) },
    { label: w().transfer, value: (row) => w().transferWord[row.transfer] || row.transfer },
  ];
  if (withLinks) {
    columns.push({
      label: w().statement,
      value: (row) =>
        h(
          "span",
          { class: "links" },
          h("a", { href: `#/statement/${encodeURIComponent(row.id)}`, class: "statement-open", "data-statement": row.id, "aria-label": w().openStatementOf(lang() === "ja" ? row.merchant_name_ja : row.merchant_name_en || row.merchant_name_ja) }, w().openStatement),
          h("a", { href: `${FINANCE}/statements/${encodeURIComponent(row.id)}/print`, target: "_blank", rel: "noopener", class: "statement-print" }, w().print),
          h("a", { href: `${FINANCE}/statements/${encodeURIComponent(row.id)}.csv`, download: "" }, w().csv),
        ),
    });
  }
  return columns;
}

// --- The runs, and the plan of a month ---------------------------------------------------------

export function settlementScreen() {
  const today = tokyoToday();
  const state = { runs: null, next: null, period: monthStart(today, -1).slice(0, 7), plan: null, error: null, busy: false };
  let screen = null;
  state.refresh = () => redraw(screen);
  const load = async () => {
    try {
      const query = new URLSearchParams({ limit: "12" });
      if (state.next) query.set("cursor", state.next);
      const page = await get(`${FINANCE}/settlement-runs?${query}`);
      state.runs = [...(state.runs || []), ...page.items];
      state.next = page.next_cursor;
    } catch (failure) {
      state.error = sentenceOf(w, failure);
    }
    redraw(screen);
  };
  const plan = (event) => {
    event.preventDefault();
    return act(state, async () => {
      state.plan = await get(`${FINANCE}/settlement-plan?period=${encodeURIComponent(state.period)}`);
    }, () => {
      state.plan = null;
    });
  };
  screen = desk(
    "finance-settlement",
    () => [
      h("h1", {}, w().settlementTitle),
      h("p", { class: "quiet" }, w().settlementLead),
      errorLine(state.error),
      h(
        "section",
        { "aria-labelledby": "runs-title" },
        h("h2", { id: "runs-title" }, w().runsTitle),
        state.runs &&
          table(
            "table-runs",
            [
              {
                label: w().month,
                value: (run) => h("a", { href: `#/settlement/${encodeURIComponent(run.id)}`, class: "run-link", "data-run": run.id }, monthName(run.period)),
              },
              { label: w().settledAt, value: (run) => moment(run.created_at) },
              { label: w().transferFile, value: (run) => (run.file_made_at ? moment(run.file_made_at) : "—") },
              { label: w().stateLabel, value: runState },
            ],
            state.runs,
            { empty: w().noRuns },
          ),
        state.next && h("button", { id: "runs-more", type: "button", class: "button secondary", onclick: load }, w().more),
      ),
      h(
        "section",
        { "aria-labelledby": "plan-title" },
        h("h2", { id: "plan-title" }, w().planTitle),
        h("p", { class: "quiet" }, w().planLead),
        h(
          "form",
          { id: "plan-form", class: "row", onsubmit: plan },
          field(
            "plan-period",
            w().month,
            dateInput("plan-period", "month", state, "period"),
          ),
          h("button", { id: "plan-show", type: "submit", class: "button primary", disabled: state.busy }, w().showPlan),
        ),
        state.plan && [
          h("h3", { id: "plan-heading" }, w().planOf(monthName(state.plan.period))),
          totalsOf("plan-totals", state.plan.totals),
          table("table-plan", statementColumns(false), state.plan.statements, { empty: w().noStatements }),
        ],
      ),
    ],
    "settlement",
  );
  load();
}

// --- One run -----------------------------------------------------------------------------------

export async function runScreen(id) {
  const path = `${FINANCE}/settlement-runs/${encodeURIComponent(id)}`;
  const state = {
    run: null,
    transfers: [],
    error: null,
    busy: false,
    asking: null, // "file" | "paid" | a transfer id (rejecting it)
    made: null,
    fileKey: null,
    transferDate: null,
    paidDate: null,
    reason: "",
  };
  let screen = null;
  state.refresh = () => redraw(screen);
  const load = async () => {
    try {
      state.run = await get(path);
      state.transfers = await get(`${path}/transfers`);
      const end = monthEnd(`${state.run.period}-01`);
      const suggested = monthStart(end, 1).slice(0, 8) + "10";
      state.transferDate = state.transferDate || suggested;
      state.paidDate = state.paidDate || tokyoToday();
    } catch (failure) {
      state.error = sentenceOf(w, failure);
    }
    redraw(screen);
  };
  // An act on the run: then the run read again; a Notice is its own sentence.
  const change = (work) =>
    act(state, async () => {
      await work();
      state.asking = null;
      await load();
    }, (failure) => (failure instanceof Notice ? failure.message : null));
  const makeFile = () =>
    change(async () => {
      state.fileKey = state.fileKey || newKey();
      try {
        state.made = await post(`${path}/transfer-file`, { transfer_date: state.transferDate }, state.fileKey);
        state.fileKey = null;
      } catch (failure) {
        if (failure instanceof Refused) state.fileKey = null;
        // Nothing to transfer: no bank statement left outside a sent or paid file.
        if (failure instanceof Refused && failure.problem.code === "conflict") throw new Notice(w().nothingToTransfer);
        throw failure;
      }
    });
  const markPaid = () => change(() => post(`${path}/paid`, { payout_date: state.paidDate }));
  const reject = (transferId) =>
    change(() => post(`${FINANCE}/transfers/${encodeURIComponent(transferId)}/rejected`, { reason: state.reason }));
  const ask = (what) => () => {
    state.asking = what;
    state.error = null;
    redraw(screen);
  };
  const cancel = () => {
    state.asking = null;
    redraw(screen);
  };
  const confirmRow = (confirmId, confirmLabel, onConfirm, question) =>
    h(
      "div",
      { class: "confirm", role: "group", "aria-labelledby": `${confirmId}-question` },
      h("p", { id: `${confirmId}-question`, class: "question" }, question),
      h(
        "div",
        { class: "row" },
        h("button", { id: confirmId, type: "button", class: "button primary", onclick: onConfirm, disabled: state.busy }, confirmLabel),
        h("button", { id: `${confirmId}-cancel`, type: "button", class: "button secondary", onclick: cancel }, w().cancel),
      ),
    );
  screen = desk(
    "finance-run",
    () => {
      const run = state.run;
      if (!run) return [h("h1", {}, w().runTitle), errorLine(state.error), link("back", w().backToRuns, "#/settlement")];
      const month = monthName(run.period);
      return [
        h("h1", {}, w().runOf(month)),
        h("p", { id: "run-state", class: "quiet" }, runState(run), " ・ ", w().cutAt(moment(run.cut_at))),
        errorLine(state.error),
        totalsOf("run-totals", run.totals),
        h(
          "div",
          { class: "row" },
          h("a", { id: "run-statements-csv", class: "button secondary", href: `${path}/statements.csv`, download: "" }, w().statementsCsv),
          h("a", { id: "run-budget-csv", class: "button secondary", href: `${path}/budget-lines.csv`, download: "" }, w().budgetLinesCsv),
          link("back", w().backToRuns, "#/settlement"),
        ),
        h(
          "section",
          { "aria-labelledby": "statements-title" },
          h("h2", { id: "statements-title" }, w().statementsTitle),
          table("table-statements", statementColumns(true), run.statements, { empty: w().noStatements }),
        ),
        h(
          "section",
          { "aria-labelledby": "file-title" },
          h("h2", { id: "file-title" }, w().fileTitle),
          h("p", { class: "quiet" }, w().fileLead),
          state.made &&
            h(
              "p",
              { id: "file-made", role: "status" },
              w().fileMade(state.made.count, w().yenOf(state.made.total)),
              state.made.without_bank_details.length ? ` ${w().withoutBank(state.made.without_bank_details.length)}` : "",
            ),
          run.file_made_at &&
            h("a", { id: "transfer-download", class: "button primary", href: `${path}/transfer-file`, download: "" }, w().downloadFile),
          !run.paid_on &&
            (state.asking === "file"
              ? confirmRow("transfer-confirm", w().makeFile, makeFile, w().fileQuestion(month, day(state.transferDate)))
              : h(
                  "div",
                  { class: "row" },
                  field(
                    "transfer-date",
                    w().transferDate,
                    dateInput("transfer-date", "date", state, "transferDate"),
                  ),
                  h("button", { id: "transfer-make", type: "button", class: run.file_made_at ? "button secondary" : "button primary", onclick: ask("file") }, run.file_made_at ? w().makeFileAgain : w().makeFile),
                )),
        ),
        h(
          "section",
          { "aria-labelledby": "transfers-title" },
          h("h2", { id: "transfers-title" }, w().transfersTitle),
          table(
            "table-transfers",
            [
              { label: w().line, numeric: true, key: "line" },
              { label: w().merchant, value: (row) => nameOf(run.statements, row.merchant_id) },
              { label: w().bank, value: (row) => `${row.bank_code}-${row.branch_code} ${row.account_number}` },
              { label: w().yenToPay, numeric: true, value: (row) => w().yenOf(row.amount) },
              { label: w().stateLabel, value: (row) => w().transferState[row.status] || row.status },
              {
                label: w().actions,
                value: (row) =>
                  row.status === "sent" &&
                  h("button", { id: `reject-${row.id}`, type: "button", class: "button secondary", onclick: ask(row.id), "aria-label": w().rejectOf(row.line) }, w().reject),
              },
            ],
            state.transfers,
            { empty: w().noTransfers },
          ),
          typeof state.asking === "number" && [
            field(
              "reject-reason",
              w().rejectReason,
              h("input", {
                id: "reject-reason",
                type: "text",
                maxlength: 200,
                value: state.reason,
                oninput: (event) => {
                  state.reason = event.target.value;
                },
              }),
            ),
            confirmRow("reject-confirm", w().reject, () => reject(state.asking), w().rejectQuestion),
          ],
        ),
        h(
          "section",
          { "aria-labelledby": "paid-title" },
          h("h2", { id: "paid-title" }, w().paidTitle),
          run.paid_on
            ? h("p", { id: "paid-on" }, w().runPaid(day(run.paid_on)))
            : [
                h("p", { class: "quiet" }, w().paidLead),
                state.asking === "paid"
                  ? confirmRow("paid-confirm", w().markPaid, markPaid, w().paidQuestion(month, day(state.paidDate)))
                  : h(
                      "div",
                      { class: "row" },
                      field(
                        "paid-date",
                        w().payoutDate,
                        dateInput("paid-date", "date", state, "paidDate"),
                      ),
                      h("button", { id: "paid-mark", type: "button", class: "button secondary", onclick: ask("paid"), disabled: !run.file_made_at }, w().markPaid),
                    ),
              ],
        ),
      ];
    },
    "settlement",
  );
  await load();
}
