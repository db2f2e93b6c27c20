// The finance PC's screen of one statement (`#/statement/<id>`, from a run's statements): its
// figures, its lines by program and budget code, the entries it covers, print and CSV; and, for a
// closed merchant's final statement that ends negative (the shop owes the city), the recovery:
// how the balance was recovered (repaid, offset or written off) recorded after a confirmation
// whose reason is the note, then shown (method, note, when, by whom).
//
// The recovery keeps its Idempotency-Key until a definite answer: a retry after a cut connection
// sends the same key (never two recoveries); a refusal drops it.
import { Refused, get, newKey, post } from "../../app/js/api.js";
import { errorLine, h, link } from "../../app/js/dom.js";
import { day, lang, money, moment } from "../../app/js/i18n.js";
import { sums, table } from "./desk.js";
import { choose, screenOf } from "./desk-kit.js";
import { ask, confirmBox, load, monthName, w } from "./finance-charts.js";

const FINANCE = "/api/v1/finance";
const METHODS = ["repaid", "offset", "written_off"];

function merchantName(statement) {
  return lang() === "ja" ? statement.merchant_name_ja : statement.merchant_name_en || statement.merchant_name_ja;
}

// A final statement that ends negative and has no recovery yet: the act is offered.
function owed(statement) {
  return statement.final && statement.carried_out < 0 && !statement.recovery;
}

export function statementScreen(id) {
  const path = `${FINANCE}/statements/${encodeURIComponent(id || "")}`;
  const s = screenOf("finance-statement", "settlement", draw, { busy: true, statement: null, key: null });
  s.record = () => {
    const method = s.form.method || METHODS[0];
    ask(
      s,
      w().recoveryQuestion(w().recoveryMethods[method]),
      w().recoveryRecord,
      async (note) => {
        s.key = s.key || newKey();
        try {
          await post(`${path}/recovery`, { method, note }, s.key);
          s.key = null;
        } catch (failure) {
          if (failure instanceof Refused) s.key = null;
          throw failure;
        }
        s.statement = await get(path);
        s.done = w().recoveryDone;
      },
      w().recoveryNoteHint,
    );
  };
  load(s, async () => {
    s.statement = await get(path);
  });
}

function draw(s) {
  const statement = s.statement;
  if (!statement) return [h("h1", {}, w().statement), errorLine(s.error), link("back", w().backToRuns, "#/settlement")];
  const yen = (n) => w().yenOf(n);
  return [
    h("h1", {}, w().statementOf(merchantName(statement), monthName(statement.period))),
    statement.final && h("p", { id: "statement-final" }, w().statementFinal),
    errorLine(s.error),
    s.done && h("p", { id: "done", class: "done-line", role: "status" }, s.done),
    h(
      "section",
      { "aria-labelledby": "statement-figures-title" },
      h("h2", { id: "statement-figures-title" }, w().figuresOfStatement),
      sums("statement-figures", [
        [w().pointType, statement.point_type],
        [w().paymentsOf(statement.payment_count), money(statement.payment_points)],
        [w().refundsOf(statement.refund_count), money(statement.refund_points)],
        [w().net, money(statement.net_points)],
        [w().carriedIn, money(statement.carried_in)],
        [w().settlePoints, money(statement.settle_points)],
        [w().carriedOut, money(statement.carried_out)],
        [w().yen, yen(statement.yen)],
        [w().fee, yen(statement.fee)],
        [w().yenToPay, yen(statement.yen_to_pay)],
        [w().transfer, w().transferWord[statement.transfer] || statement.transfer],
        [w().payoutDate, statement.payout_date ? day(statement.payout_date) : w().unpaid],
      ]),
      h(
        "div",
        { class: "row" },
        h("a", { id: "statement-print", class: "button secondary", href: `${FINANCE}/statements/${encodeURIComponent(statement.id)}/print`, target: "_blank", rel: "noopener" }, w().print),
        h("a", { id: "statement-csv", class: "button secondary", href: `${FINANCE}/statements/${encodeURIComponent(statement.id)}.csv`, download: "" }, w().csv),
        link("back-run", w().backToRun, `#/settlement/${encodeURIComponent(statement.run_id)}`),
      ),
    ),
    (statement.recovery || owed(statement)) && recoverySection(s, statement),
    h(
      "section",
      { "aria-labelledby": "lines-title" },
      h("h2", { id: "lines-title" }, w().linesTitle),
      table(
        "table-lines",
        [
          { label: w().program, value: (line) => (line.kind === "program" ? (lang() === "ja" ? line.program_name_ja : line.program_name_en || line.program_name_ja) : w().lineKind[line.kind] || line.kind) },
          { label: w().budgetCode, value: (line) => line.budget_code || "—" },
          { label: w().points, numeric: true, value: (line) => money(line.points) },
          { label: w().yen, numeric: true, value: (line) => yen(line.yen) },
        ],
        statement.lines,
        { empty: w().none },
      ),
    ),
    h(
      "section",
      { "aria-labelledby": "entries-title" },
      h("h2", { id: "entries-title" }, w().entriesTitle),
      table(
        "table-entries",
        [
          { label: w().entryId, numeric: true, value: (entry) => entry.entry_id ?? "" },
          { label: w().kind, value: (entry) => w().entryKindWord[entry.kind] || entry.kind },
          { label: w().paymentId, value: (entry) => (entry.payment_id ? h("code", {}, entry.payment_id) : "—") },
          { label: w().points, numeric: true, value: (entry) => money(entry.points) },
          { label: w().recordedAt, value: (entry) => moment(entry.recorded_at) },
        ],
        statement.entries,
        { empty: w().noEntries },
      ),
    ),
  ];
}

function recoverySection(s, statement) {
  const recovery = statement.recovery;
  const owedPoints = -statement.carried_out;
  return h(
    "section",
    { id: "recovery", class: "recovery", "aria-labelledby": "recovery-title" },
    h("h2", { id: "recovery-title" }, w().recoveryTitle),
    recovery
      ? sums("recovery-figures", [
          [w().recoveryMethod, w().recoveryMethods[recovery.method] || recovery.method],
          [w().recoveredPoints, `${money(recovery.points)} / ${w().yenOf(recovery.yen)}`],
          [w().recoveryNote, recovery.note],
          [w().recordedAt, moment(recovery.recorded_at)],
          recovery.recorded_by && [w().recordedBy, h("code", {}, recovery.recorded_by)],
        ].filter(Boolean))
      : [
          h("p", { id: "recovery-lead" }, w().recoveryLead(money(owedPoints), w().yenOf(owedPoints * statement.yen_rate))),
          s.confirm
            ? confirmBox(s)
            : h(
                "div",
                { class: "row" },
                choose(s, "recovery-method", w().recoveryMethod, "method", METHODS.map((method) => [method, w().recoveryMethods[method]])),
                h("button", { id: "recovery-record", type: "button", class: "button primary", disabled: s.busy, onclick: s.record }, w().recoveryRecord),
              ),
        ],
  );
}
