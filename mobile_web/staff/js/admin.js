// The admin PC's screens: the home (what is set up, what to set up first) and the menu. The
// screens themselves are in admin-setup.js (point types, departments, programs),
// admin-merchants.js (merchants, their tills and bank details), admin-catalog.js (goods and
// stock) and admin-people.js (staff, device sessions and tokens).
import { get } from "../../app/js/api.js";
import { errorLine, h } from "../../app/js/dom.js";
import { catalogScreen } from "./admin-catalog.js";
import { everything, say, screenOf, w } from "./admin-kit.js";
import { merchantScreen, merchantsScreen } from "./admin-merchants.js";
import { sessionsScreen, staffScreen } from "./admin-people.js";
import { departmentsScreen, pointTypesScreen, programsScreen } from "./admin-setup.js";

export const menu = [
  { route: "home", label: () => w().home },
  { route: "point-types", label: () => w().menuTypes },
  { route: "departments", label: () => w().menuDepartments },
  { route: "programs", label: () => w().menuPrograms },
  { route: "merchants", label: () => w().menuMerchants },
  { route: "catalog", label: () => w().menuCatalog },
  { route: "staff", label: () => w().menuStaff },
  { route: "sessions", label: () => w().menuSessions },
];

const ADMIN = "/api/v1/admin";

// The order a new city is set up in: [route, count key].
const STEPS = [
  ["point-types", "types"],
  ["departments", "departments"],
  ["programs", "programs"],
  ["merchants", "merchants"],
  ["staff", "staff"],
];

function homeScreen() {
  const s = screenOf("admin-home", "home", drawHome, { counts: null });
  (async () => {
    try {
      const [types, departments, programs, merchants, staff, sessions] = await Promise.all([
        get(`${ADMIN}/point-types`),
        everything(get, `${ADMIN}/departments`),
        everything(get, `${ADMIN}/programs`),
        everything(get, `${ADMIN}/merchants`),
        everything(get, `${ADMIN}/staff`),
        get(`${ADMIN}/device-sessions`),
      ]);
      s.counts = {
        types: types.length,
        departments: departments.length,
        programs: programs.length,
        activePrograms: programs.filter((p) => p.status === "active").length,
        merchants: merchants.length,
        activeMerchants: merchants.filter((m) => m.status === "active").length,
        staff: staff.filter((one) => ["counter", "issuer", "finance"].includes(one.role)).length,
        sessions: sessions.length,
      };
    } catch (failure) {
      s.error = say(failure);
    }
    s.refresh();
  })();
}

function drawHome(s) {
  const c = s.counts;
  const next = c && STEPS.find(([, key]) => c[key] === 0);
  return [
    h("h1", {}, w().homeTitle),
    errorLine(s.error),
    c &&
      h(
        "p",
        { id: "next-step", class: "lead" },
        next ? w().nextStep(w().stepTitles[next[0]]) : w().allSet,
      ),
    h("h2", {}, w().stepsTitle),
    h(
      "ol",
      { id: "steps", class: "steps" },
      STEPS.map(([route, key]) => {
        
        const done = c && c[key] > 0;
        return h(
          "li",
          { id: `step-${route}`, class: done ? "done" : next && next[0] === route ? "next" : null },
          h("a", { href: `#/${route}`, id: `go-${route}` }, w().stepTitles[route]),
          h("span", { class: "step-state" }, c ? (done ? w().stepDone(c[key]) : w().stepTodo) : ""),
          h("p", { class: "hint" }, w().stepWhat[route]),
        );
      }),
    ),
    h("h2", {}, w().countsTitle),
    c
      ? h(
          "dl",
          { id: "counts", class: "sums counts" },
          [
            [w().menuTypes, c.types],
            [w().menuDepartments, c.departments],
            [w().programsActive, `${c.activePrograms} / ${c.programs}`],
            [w().merchantsActive, `${c.activeMerchants} / ${c.merchants}`],
            [w().officeStaff, c.staff],
            [w().deviceSessions, c.sessions],
          ].map(([label, value]) => [h("dt", {}, label), h("dd", {}, String(value))]),
        )
      : h("p", { class: "quiet" }, w().loading),
  ];
}

export const routes = {
  home: homeScreen,
  "point-types": pointTypesScreen,
  departments: departmentsScreen,
  programs: programsScreen,
  merchants: (detail) => (detail ? merchantScreen(detail) : merchantsScreen()),
  catalog: catalogScreen,
  staff: staffScreen,
  sessions: sessionsScreen,
};
