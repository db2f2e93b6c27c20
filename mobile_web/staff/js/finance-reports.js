// The finance PC's reports: points outstanding by expiry month, breakage (expired points) and
// payments per month (one request, summed over the point types), payments by shop, the trial balance and the budgets. Each chart is an
// inline SVG beside its table; every report is also a CSV to download.
import { get } from "../../app/js/api.js";
import { errorLine, h, redraw } from "../../app/js/dom.js";
import { day, money } from "../../app/js/i18n.js";
import { desk, field, sentenceOf, table } from "./desk.js";
import { monthChart, monthEnd, monthName, monthStart, rowChart, sumBy, tokyoToday, w } from "./finance-charts.js";

const REPORTS = "/api/v1/finance/reports";

// The months from `from` to `to` ("2026-01-01" .. "2026-12-05"): [{ period, from, to }].
function monthsOf(from, to) {
  const months = [];
  for (let first = monthStart(from); first <= to && months.length < 13; first = monthStart(first, 1)) {
    const last = monthEnd(first);
    months.push({ period: first.slice(0, 7), from: first < from ? from : first, to: last > to ? to : last });
  }
  return months;
}

// Sums by month [{ key: "2027-07", value }] with the months between them (0) filled in.
function everyMonth(sums) {
  if (!sums.length) return [];
  const by = new Map(sums.map((sum) => [sum.key, sum.value]));
  const last = sums[sums.length - 1].key;
  const months = [];
  for (let first = `${sums[0].key}-01`; first.slice(0, 7) <= last && months.length < 60; first = monthStart(first, 1)) {
    months.push({ period: first.slice(0, 7), value: by.get(first.slice(0, 7)) || 0 });
  }
  return months;
}

// The payments report by month (a row per month and point type) summed over the point types, a
// row for every month of the range: [{ period, payments, paid, refunded, value }].
function perMonthOf(months, rows) {
  const by = new Map(months.map((month) => [month.period, { period: month.period, payments: 0, paid: 0, refunded: 0, value: 0 }]));
  for (const row of rows) {
    if (!by.has(row.month)) by.set(row.month, { period: row.month, payments: 0, paid: 0, refunded: 0, value: 0 });
    const sum = by.get(row.month);
    sum.payments += row.payments;
    sum.paid += row.paid;
    sum.refunded += row.refunded;
    sum.value += row.net;
  }
  return [...by.values()].sort((a, b) => (a.period < b.period ? -1 : a.period > b.period ? 1 : 0));
}

function csvLink(id, path) {
  const joiner = path.includes("?") ? "&" : "?";
  return h("a", { id, class: "button secondary", href: `${REPORTS}/${path}${joiner}format=csv`, download: "" }, w().csv);
}

function pointsColumn(label, key) {
  return { label, numeric: true, value: (row) => money(row[key]) };
}

export function reportsScreen() {
  const today = tokyoToday();
  const state = {
    date: today,
    from: monthStart(today, -11),
    to: today,
    data: null,
    error: null,
    busy: false,
  };
  let screen = null;
  const load = async () => {
    state.busy = true;
    state.error = null;
    redraw(screen);
    const { date, from, to } = state;
    try {
      const range = `from=${from}&to=${to}`;
      const months = monthsOf(from, to);
      const [outstanding, breakage, byMerchant, trial, budgets, byMonth] = await Promise.all([
        get(`${REPORTS}/outstanding?date=${date}`),
        get(`${REPORTS}/breakage?${range}`),
        get(`${REPORTS}/payments-by-merchant?${range}`),
        get(`${REPORTS}/trial-balance?date=${date}`),
        get(`${REPORTS}/budgets`),
        get(`${REPORTS}/payments-by-month?${range}`),
      ]);
      const breakageMonths = new Map(months.map((month) => [month.period, 0]));
      for (const row of breakage.rows) breakageMonths.set(row.month, (breakageMonths.get(row.month) || 0) + row.points);
      state.data = {
        date,
        range,
        outstanding: everyMonth(sumBy(outstanding.rows, (row) => row.expiry_month, (row) => row.points)),
        breakage: [...breakageMonths.entries()].map(([period, value]) => ({ period, value })),
        perMonth: perMonthOf(months, byMonth.rows),
        byMerchant: byMerchant.rows,
        merchants: sumBy(byMerchant.rows, (row) => row.merchant_name, (row) => row.net)
          .map((bar) => ({ name: bar.key, value: bar.value }))
          .sort((a, b) => b.value - a.value),
        trial: trial.rows,
        budgets: budgets.rows,
      };
    } catch (failure) {
      state.error = sentenceOf(w, failure);
    }
    state.busy = false;
    redraw(screen);
  };
  const set = (name) => (event) => {
    state[name] = event.target.value;
  };
  screen = desk("finance-reports", () => {
    const data = state.data;
    return [
      h("h1", {}, w().reportsTitle),
      h(
        "form",
        {
          id: "report-form",
          class: "row",
          onsubmit: (event) => {
            event.preventDefault();
            if (!state.busy) load();
          },
        },
        field("report-date", w().atDate, h("input", { id: "report-date", type: "date", required: true, value: state.date, onchange: set("date") })),
        field("report-from", w().fromDay, h("input", { id: "report-from", type: "date", required: true, value: state.from, onchange: set("from") })),
        field("report-to", w().toDay, h("input", { id: "report-to", type: "date", required: true, value: state.to, onchange: set("to") })),
        h("button", { id: "report-show", type: "submit", class: "button primary", disabled: state.busy }, w().show),
      ),
      h("p", { class: "hint" }, w().reportsHint),
      errorLine(state.error),
      data && reportSections(data),
    ];
  }, "reports");
  load();
}

function section(id, title, ...children) {
  return h("section", { id: `report-${id}`, class: "report", "aria-labelledby": `${id}-title` }, h("h2", { id: `${id}-title` }, title), children);
}

function reportSections(data) {
  const monthColumn = { label: w().month, value: (row) => monthName(row.period) };
  return [
    section(
      "outstanding",
      w().outstandingTitle(day(data.date)),
      h("p", { class: "quiet" }, w().outstandingLead, " ", w().total(money(data.outstanding.reduce((s, b) => s + b.value, 0)))),
      data.outstanding.length
        ? [
            monthChart("chart-outstanding", w().outstandingChart, data.outstanding),
            table("table-outstanding", [{ label: w().expiryMonth, value: (row) => monthName(row.period) }, pointsColumn(w().points, "value")], data.outstanding),
          ]
        : h("p", { id: "table-outstanding-empty", class: "quiet" }, w().none),
      csvLink("csv-outstanding", `outstanding?date=${data.date}`),
    ),
    section(
      "breakage",
      w().breakageTitle,
      h("p", { class: "quiet" }, w().breakageLead),
      monthChart("chart-breakage", w().breakageChart, data.breakage),
      table("table-breakage", [monthColumn, pointsColumn(w().expiredPoints, "value")], data.breakage),
      csvLink("csv-breakage", `breakage?${data.range}`),
    ),
    section(
      "payments",
      w().paymentsTitle,
      h("p", { class: "quiet" }, w().paymentsLead),
      monthChart("chart-payments", w().paymentsChart, data.perMonth),
      table(
        "table-payments",
        [
          monthColumn,
          { label: w().paymentCount, numeric: true, value: (row) => row.payments.toLocaleString("en-US") },
          pointsColumn(w().paid, "paid"),
          pointsColumn(w().refunded, "refunded"),
          pointsColumn(w().net, "value"),
        ],
        data.perMonth,
      ),
      csvLink("csv-payments", `payments-by-month?${data.range}`),
    ),
    section(
      "merchants",
      w().merchantsTitle,
      data.merchants.length
        ? [
            rowChart("chart-merchants", w().merchantsChart, data.merchants),
            table(
              "table-merchants",
              [
                { label: w().merchant, key: "merchant_name" },
                { label: w().category, value: (row) => w().categories[row.category] || row.category },
                { label: w().pointType, key: "point_type" },
                { label: w().paymentCount, numeric: true, key: "payments" },
                pointsColumn(w().paid, "paid"),
                pointsColumn(w().refunded, "refunded"),
                pointsColumn(w().net, "net"),
              ],
              data.byMerchant,
            ),
          ]
        : h("p", { id: "table-merchants-empty", class: "quiet" }, w().none),
      csvLink("csv-merchants", `payments-by-merchant?${data.range}`),
    ),
    section(
      "trial",
      w().trialTitle(day(data.date)),
      h("p", { class: "quiet" }, w().trialLead),
      table(
        "table-trial",
        [
          { label: w().ledger, value: (row) => (row.ledger === "TOTAL" ? w().totalRow : row.ledger) },
          { label: w().accountCode, numeric: true, value: (row) => row.account_code ?? "" },
          { label: w().account, value: (row) => (row.account ? w().accounts[row.account] || row.account : "") },
          pointsColumn(w().debits, "debits"),
          pointsColumn(w().credits, "credits"),
        ],
        data.trial,
      ),
      csvLink("csv-trial", `trial-balance?date=${data.date}`),
    ),
    section(
      "budgets",
      w().budgetsTitle,
      table(
        "table-budgets",
        [
          { label: w().fiscalYear, value: (row) => w().fiscalYearOf(row.fiscal_year) },
          { label: w().budgetCode, key: "budget_code" },
          { label: w().program, key: "program_id" },
          pointsColumn(w().allocated, "allocated"),
          pointsColumn(w().drawn, "drawn"),
          pointsColumn(w().remaining, "remaining"),
        ],
        data.budgets,
        { empty: w().none },
      ),
      csvLink("csv-budgets", "budgets"),
    ),
  ];
}
