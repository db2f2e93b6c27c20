// The department PC's screens (担当課, session role `issuer`): its home (the department, its
// programs and this fiscal year's budgets, what to do first), a program's page (a fiscal year's
// budget and its awards), awarding one resident, awarding a CSV file (checked first), an upload's
// outcome, and a volunteering program's events with their full-screen check-in.
import { get } from "../../app/js/api.js";
import { button, errorLine, h, link, redraw } from "../../app/js/dom.js";
import { day, money, moment } from "../../app/js/i18n.js";
import { go } from "./common.js";
import { desk, field, sums, table } from "./desk.js";
import { awardScreen, uploadResultScreen, uploadScreen } from "./department-award.js";
import {
  ISSUER,
  fiscalYearOf,
  loadPrograms,
  moduleWord,
  nameOf,
  statusWord,
  thisFiscalYear,
  w,
  why,
} from "./department-common.js";
import { checkInScreen, eventsScreen } from "./department-events.js";

export const menu = [
  { route: "home", label: () => w().home },
  { route: "award", label: () => w().awardMenu },
  { route: "upload", label: () => w().uploadMenu },
  { route: "events", label: () => w().eventsMenu },
];

// --- Home ------------------------------------------------------------------------------------

function homeScreen() {
  const state = { department: null, programs: null, budgets: {}, error: null };
  const year = thisFiscalYear();
  const screen = desk("department-home", () => drawHome(state, year), "home");
  (async () => {
    try {
      const [department, programs] = await Promise.all([get(`${ISSUER}/department`), loadPrograms()]);
      state.department = department;
      state.programs = programs;
      const budgets = await Promise.all(
        programs.map((program) => get(`${ISSUER}/programs/${encodeURIComponent(program.id)}/budgets/${year}`).catch(() => null)),
      );
      programs.forEach((program, index) => {
        state.budgets[program.id] = budgets[index];
      });
    } catch (failure) {
      state.error = why(failure);
    }
    redraw(screen);
  })();
}

function drawHome(state, year) {
  const department = state.department;
  const title = department ? w().homeOf(department.name_ja, department.name_en) : w().homeTitle;
  const budgetOf = (program) => state.budgets[program.id];
  const value = (key) => (program) => (budgetOf(program) ? money(budgetOf(program)[key]) : "—");
  return [
    h("h1", {}, title),
    errorLine(state.error),
    h(
      "section",
      { class: "first-steps", "aria-labelledby": "first-title" },
      h("h2", { id: "first-title" }, w().firstTitle),
      h("ol", { id: "first-steps" }, w().firstSteps.map((step) => h("li", {}, step))),
      h(
        "div",
        { class: "row" },
        link("go-award", w().awardMenu, "#/award"),
        link("go-upload", w().uploadMenu, "#/upload"),
        link("go-events", w().eventsMenu, "#/events"),
      ),
    ),
    h("h2", { id: "programs-title" }, w().programsOf(year)),
    !state.programs && !state.error && h("p", { class: "quiet" }, w().loading),
    state.programs &&
      table(
        "programs",
        [
          {
            label: w().program,
            value: (program) =>
              h("a", { class: "program-name", href: `#/program/${encodeURIComponent(program.id)}`, "data-program": program.id }, nameOf(program)),
          },
          { label: w().kind, value: (program) => moduleWord(program.module) },
          { label: w().status, value: (program) => h("span", { class: "nowrap" }, statusWord(program.status)) },
          { label: w().perAward, value: (program) => money(program.amount), numeric: true },
          { label: w().allocated, value: value("allocated"), numeric: true },
          { label: w().awarded, value: value("awarded"), numeric: true },
          { label: w().remaining, value: value("remaining"), numeric: true },
          {
            label: w().residentsAwarded,
            value: (program) => (budgetOf(program) ? w().people(budgetOf(program).residents_awarded) : "—"),
            numeric: true,
          },
        ],
        state.programs,
        { empty: w().noPrograms },
      ),
  ];
}

// --- One program -----------------------------------------------------------------------------

const AWARDS_PAGE = 20;

function programScreen(detail) {
  const [id, asked] = (detail || "").split("/");
  if (!id) return homeScreen();
  const year = /^\d{4}$/.test(asked || "") ? Number(asked) : thisFiscalYear();
  const state = { program: null, budget: null, awards: [], next: null, error: null, loaded: false, busy: false };
  const path = `${ISSUER}/programs/${encodeURIComponent(id)}`;
  const more = async () => {
    state.busy = true;
    redraw(screen);
    try {
      const query = new URLSearchParams({ fiscal_year: String(year), limit: String(AWARDS_PAGE) });
      if (state.next) query.set("cursor", state.next);
      const page = await get(`${path}/awards?${query}`);
      state.awards.push(...page.items);
      state.next = page.next_cursor;
    } catch (failure) {
      state.error = why(failure);
    }
    state.busy = false;
    redraw(screen);
  };
  const screen = desk("department-program", () => drawProgram(state, year, more), "home");
  (async () => {
    try {
      const [program, budget] = await Promise.all([get(path), get(`${path}/budgets/${year}`)]);
      state.program = program;
      state.budget = budget;
    } catch (failure) {
      state.error = why(failure);
    }
    state.loaded = true;
    if (state.program) await more();
    else redraw(screen);
  })();
}

function yearChooser(program, year) {
  const first = fiscalYearOf(program.valid_from);
  const last = Math.max(thisFiscalYear(), year);
  const years = [];
  for (let y = last; y >= Math.min(first, year); y -= 1) years.push(y);
  const select = h(
    "select",
    {
      id: "fiscal-year",
      onchange: (event) => go(`#/program/${encodeURIComponent(program.id)}/${event.target.value}`),
    },
    years.map((y) => h("option", { value: String(y), selected: y === year }, w().fiscalYear(y))),
  );
  return field("fiscal-year", w().fiscalYearLabel, select);
}

function drawProgram(state, year, more) {
  const { program, budget } = state;
  if (!program) {
    return [
      h("h1", {}, w().programTitle),
      errorLine(state.error),
      !state.loaded && h("p", { class: "quiet" }, w().loading),
      link("back-home", w().backHome, "#/home"),
    ];
  }
  const pid = encodeURIComponent(program.id);
  return [
    h("h1", {}, nameOf(program)),
    h(
      "p",
      { id: "program-facts" },
      `${moduleWord(program.module)} ・ ${statusWord(program.status)} ・ ${w().perAwardIs(money(program.amount))}`,
      program.valid_until ? ` ・ ${w().until(day(program.valid_until))}` : "",
    ),
    errorLine(state.error),
    h(
      "div",
      { class: "row" },
      yearChooser(program, year),
      program.module !== "volunteering" && link("program-award", w().awardMenu, `#/award/${pid}`),
      link("program-upload", w().uploadMenu, `#/upload/${pid}`),
      program.module === "volunteering" && link("program-events", w().eventsMenu, `#/events/${pid}`),
    ),
    h("h2", {}, w().budgetOf(year)),
    budget && budgetSums("budget", budget),
    budget && h("div", { class: "budget-use" }, budgetBar(budget), h("p", { id: "budget-share" }, w().usedShare(shareOf(budget)))),
    h("h2", {}, w().recentAwards),
    table(
      "awards",
      [
        { label: w().occurredOn, value: (award) => h("span", { class: "nowrap" }, day(award.occurred_on)) },
        { label: w().recordId, value: (award) => h("span", { class: "mono" }, award.record_id) },
        { label: w().resident, value: (award) => h("span", { class: "mono" }, award.resident_id) },
        { label: w().amount, value: (award) => money(award.amount), numeric: true },
        { label: w().validUntil, value: (award) => (award.valid_until ? day(award.valid_until) : w().never) },
        { label: w().awardedAt, value: (award) => moment(award.created_at) },
      ],
      state.awards,
      { empty: state.loaded && !state.busy ? w().noAwards(year) : w().loading },
    ),
    state.next && button("more-awards", w().more, more, "secondary"),
    link("back-home", w().backHome, "#/home"),
  ];
}

// A fiscal year's budget as sums (ids: <id>-allocated, -awarded, -remaining, -residents).
export function budgetSums(id, budget) {
  const line = (key, label, value) => [h("dt", {}, label), h("dd", { id: `${id}-${key}` }, value)];
  return h(
    "dl",
    { id, class: "sums two" },
    line("allocated", w().allocated, money(budget.allocated)),
    line("awarded", w().awarded, money(budget.awarded)),
    line("remaining", w().remaining, money(budget.remaining)),
    line("residents", w().residentsAwarded, w().people(budget.residents_awarded)),
    line("count", w().awardCount, w().times(budget.awards)),
    budget.status !== "open" && line("status", w().budgetStatusLabel, w().budgetStatus[budget.status] || budget.status),
  );
}

// The share of the budget awarded, in whole percent ("<1" for a little but not nothing).
function shareOf(budget) {
  const total = Math.max(budget.allocated, budget.awarded + budget.remaining);
  if (!total || !budget.awarded) return "0";
  const percent = Math.floor((budget.awarded / total) * 100);
  return percent < 1 ? "<1" : String(percent);
}

// How much of the budget is awarded, as one bar (SVG attributes, no inline style).
function budgetBar(budget) {
  const total = Math.max(budget.allocated, budget.awarded + budget.remaining, 1);
  const used = Math.min(1, budget.awarded / total);
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 600 40");
  svg.setAttribute("class", "chart budget-bar");
  svg.setAttribute("aria-hidden", "true");
  const rect = (x, width, fill) => {
    const node = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    node.setAttribute("x", String(x));
    node.setAttribute("y", "4");
    node.setAttribute("width", String(width));
    node.setAttribute("height", "24");
    node.setAttribute("fill", fill);
    return node;
  };
  svg.append(rect(0, 600, "#d5dde8"), rect(0, Math.round(600 * used), "#123f73"));
  return svg;
}

export const routes = {
  home: homeScreen,
  program: programScreen,
  award: awardScreen,
  upload: uploadScreen,
  uploads: uploadResultScreen,
  events: eventsScreen,
  checkin: checkInScreen,
};
