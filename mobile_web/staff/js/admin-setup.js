// The admin PC's set-up: point types (create, yen rate, card limits), departments (create) and
// programs (create in draft, activate / pause / close after a confirmation, budget code, a fiscal
// year's budget).
import { Refused, get, newKey, post, put } from "../../app/js/api.js";
import { errorLine, h } from "../../app/js/dom.js";
import { money } from "../../app/js/i18n.js";
import { table } from "./desk.js";
import {
  act,
  ask,
  choose,
  confirmBox,
  dayOf,
  everything,
  input,
  load,
  nameOf,
  press,
  screenOf,
  statusWord,
  w,
} from "./admin-kit.js";

const ADMIN = "/api/v1/admin";

// A whole number typed in a field, or NaN (the API then names the field).
function whole(text) {
  const value = String(text ?? "").trim().replace(/[,，]/g, "");
  return /^[0-9]+$/.test(value) ? Number(value) : Number.NaN;
}

// A number for the API: a wrong one is sent as -1 so that the API refuses it by name.
function numberOr(text) {
  const value = whole(text);
  return Number.isNaN(value) ? -1 : value;
}

// --- Point types -------------------------------------------------------------------------------

export function pointTypesScreen() {
  const s = screenOf("admin-point-types", "point-types", drawTypes, { busy: true, types: null, policies: {} });
  loadTypes(s);
}

function loadTypes(s) {
  return load(s, async () => {
    s.types = await get(`${ADMIN}/point-types`);
    const policies = await Promise.all(
      s.types.map((type) =>
        get(`${ADMIN}/point-types/${encodeURIComponent(type.code)}/card-policy`).catch(() => null),
      ),
    );
    s.types.forEach((type, index) => {
      s.policies[type.code] = policies[index];
    });
  });
}

function expiryOf(type) {
  if (type.expiry_rule === "months") return w().expiryMonths(type.expiry_months);
  if (type.expiry_rule === "fixed_date") return w().expiryDate(dayOf(type.expiry_date));
  return w().expiryNone;
}

function drawTypes(s) {
  const f = s.form;
  const types = s.types || [];
  const create = () =>
    act(s, async () => {
      const made = await post(`${ADMIN}/point-types`, {
        code: (f.typeCode || "").trim(),
        name_ja: (f.typeNameJa || "").trim(),
        name_en: (f.typeNameEn || "").trim(),
        expiry_rule: "months",
        expiry_months: numberOr(String(f.typeMonths ?? "").trim() || "12"),
        yen_rate: numberOr(String(f.typeRate ?? "").trim() || "1"),
      });
      s.types = [...types, made];
      for (const key of ["typeCode", "typeNameJa", "typeNameEn"]) f[key] = "";
      s.done = w().typeAdded(nameOf(made));
    });
  const rate = () =>
    act(s, async () => {
      const type = types.find((one) => one.id === f.rateType) || types[0];
      const changed = await put(`${ADMIN}/point-types/${encodeURIComponent(type.id)}/yen-rate`, {
        yen_rate: numberOr(f.rateValue),
        reason: (f.rateReason || "").trim(),
      });
      s.types = types.map((one) => (one.id === changed.id ? changed : one));
      f.rateValue = "";
      f.rateReason = "";
      s.done = w().rateSaved(nameOf(changed), changed.yen_rate);
    });
  const policy = () =>
    act(s, async () => {
      const type = types.find((one) => one.id === f.policyType) || types[0];
      s.policies[type.code] = await put(`${ADMIN}/point-types/${encodeURIComponent(type.code)}/card-policy`, {
        daily_limit: numberOr(f.dailyLimit),
        payments_per_shop: numberOr(f.perShop),
      });
      s.done = w().policySaved(nameOf(type));
    });
  const typeOptions = types.map((type) => [type.id, nameOf(type)]);
  return [
    h("h1", {}, w().typesTitle),
    h("p", { class: "lead" }, w().typesLead),
    errorLine(s.error),
    s.done && h("p", { id: "done", class: "done-line", role: "status" }, s.done),
    s.types === null
      ? h("p", { class: "quiet" }, w().loading)
      : table(
          "point-types",
          [
            { label: w().name, value: (type) => nameOf(type) },
            { label: w().code, key: "code" },
            { label: w().expiry, value: expiryOf },
            { label: w().yenRate, value: (type) => w().yenPer(type.yen_rate), numeric: true },
            {
              label: w().cardLimit,
              value: (type) => {
                const p = s.policies[type.code];
                return p ? w().cardLimitOf(money(p.daily_limit), p.payments_per_shop) : "";
              },
            },
          ],
          types,
          { empty: w().typesEmpty },
        ),
    h("h2", { id: "type-new-title" }, w().typeNew),
    h(
      "form",
      { id: "type-form", class: "row", "aria-labelledby": "type-new-title", onsubmit: (event) => event.preventDefault() },
      input(s, "type-code", w().code, "typeCode", {}, w().codeHint),
      input(s, "type-name-ja", w().nameJa, "typeNameJa"),
      input(s, "type-name-en", w().nameEn, "typeNameEn"),
      input(s, "type-months", w().expiryMonthsField, "typeMonths", { inputmode: "numeric", placeholder: "12" }),
      input(s, "type-rate", w().yenRate, "typeRate", { inputmode: "numeric", placeholder: "1" }),
      press(s, "type-add", w().add, create),
    ),
    types.length > 0 && [
      h("h2", { id: "rate-title" }, w().rateChange),
      h("p", { class: "hint" }, w().rateHint),
      h(
        "form",
        { id: "rate-form", class: "row", "aria-labelledby": "rate-title", onsubmit: (event) => event.preventDefault() },
        choose(s, "rate-type", w().pointType, "rateType", typeOptions),
        input(s, "rate-value", w().yenRate, "rateValue", { inputmode: "numeric" }),
        input(s, "rate-reason", w().reason, "rateReason"),
        press(s, "rate-save", w().save, rate),
      ),
      h("h2", { id: "policy-title" }, w().policyChange),
      h("p", { class: "hint" }, w().policyHint),
      h(
        "form",
        { id: "policy-form", class: "row", "aria-labelledby": "policy-title", onsubmit: (event) => event.preventDefault() },
        choose(s, "policy-type", w().pointType, "policyType", typeOptions),
        input(s, "policy-daily", w().dailyLimit, "dailyLimit", { inputmode: "numeric" }),
        input(s, "policy-per-shop", w().perShop, "perShop", { inputmode: "numeric" }),
        press(s, "policy-save", w().save, policy),
      ),
    ],
  ];
}

// --- Departments -------------------------------------------------------------------------------

export function departmentsScreen() {
  const s = screenOf("admin-departments", "departments", drawDepartments, { busy: true, departments: null });
  load(s, async () => {
    s.departments = await everything(get, `${ADMIN}/departments`);
  });
}

function drawDepartments(s) {
  const f = s.form;
  const create = () =>
    act(s, async () => {
      const made = await post(`${ADMIN}/departments`, {
        code: (f.deptCode || "").trim(),
        name_ja: (f.deptNameJa || "").trim(),
        name_en: (f.deptNameEn || "").trim(),
      });
      s.departments = [...(s.departments || []), made];
      for (const key of ["deptCode", "deptNameJa", "deptNameEn"]) f[key] = "";
      s.done = w().departmentAdded(nameOf(made));
    });
  return [
    h("h1", {}, w().departmentsTitle),
    h("p", { class: "lead" }, w().departmentsLead),
    errorLine(s.error),
    s.done && h("p", { id: "done", class: "done-line", role: "status" }, s.done),
    s.departments === null
      ? h("p", { class: "quiet" }, w().loading)
      : table(
          "departments",
          [
            { label: w().name, value: (d) => nameOf(d) },
            { label: w().code, key: "code" },
            { label: w().nameEn, key: "name_en" },
          ],
          s.departments,
          { empty: w().departmentsEmpty },
        ),
    h("h2", { id: "department-new-title" }, w().departmentNew),
    h(
      "form",
      { id: "department-form", class: "row", "aria-labelledby": "department-new-title", onsubmit: (event) => event.preventDefault() },
      input(s, "department-code", w().code, "deptCode", {}, w().codeHint),
      input(s, "department-name-ja", w().nameJa, "deptNameJa"),
      input(s, "department-name-en", w().nameEn, "deptNameEn"),
      press(s, "department-add", w().add, create),
    ),
  ];
}

// --- Programs ----------------------------------------------------------------------------------

// The fiscal year (April to March) of today in Japan.
function fiscalYearNow() {
  const [y, m] = new Intl.DateTimeFormat("en-CA", { timeZone: "Asia/Tokyo", year: "numeric", month: "numeric" })
    .format(new Date())
    .split("-")
    .map(Number);
  return m >= 4 ? y : y - 1;
}

function today() {
  return new Intl.DateTimeFormat("en-CA", { timeZone: "Asia/Tokyo" }).format(new Date());
}

export function programsScreen() {
  const s = screenOf("admin-programs", "programs", drawPrograms, { busy: true,
    programs: null,
    departments: [],
    types: [],
    budgets: {},
    keys: {},
  });
  loadPrograms(s);
}

function loadPrograms(s) {
  return load(s, async () => {
    const [programs, departments, types] = await Promise.all([
      everything(get, `${ADMIN}/programs`),
      everything(get, `${ADMIN}/departments`),
      get(`${ADMIN}/point-types`),
    ]);
    Object.assign(s, { programs, departments, types });
    const fy = fiscalYearNow();
    const budgets = await Promise.all(
      programs.map((p) =>
        get(`/api/v1/budgets/${encodeURIComponent(p.id)}/${fy}`).catch((failure) =>
          failure instanceof Refused ? null : Promise.reject(failure),
        ),
      ),
    );
    programs.forEach((p, index) => {
      s.budgets[p.id] = budgets[index];
    });
  });
}

// Each program module's settings (its `config`, issuers/modules.py): a list of choices, each
// with its label. A module not named here has none (fixed_award, volunteering).
const MODULE_SETTINGS = {
  health_checkup: [{ key: "checkup_types", label: () => w().checkupTypes, hint: () => w().checkupHint, choices: () => w().checkupNames }],
};
const MODULES = ["fixed_award", "health_checkup", "volunteering"];

// The settings of module `kind` as a form: a fieldset of checkboxes per setting, kept in
// s.form.config[kind][key] (a list of the chosen codes).
function settingsFields(s, kind) {
  const f = s.form;
  f.config ??= {};
  f.config[kind] ??= {};
  return (MODULE_SETTINGS[kind] || []).map((setting) => {
    const chosen = (f.config[kind][setting.key] ??= []);
    const id = `program-${kind}-${setting.key}`.replaceAll("_", "-");
    return h(
      "fieldset",
      { id, class: "checks", "aria-describedby": `${id}-hint` },
      h("legend", {}, setting.label()),
      h("p", { id: `${id}-hint`, class: "hint" }, setting.hint()),
      Object.entries(setting.choices()).map(([code, text]) =>
        h(
          "label",
          { class: "check" },
          h("input", {
            type: "checkbox",
            name: setting.key,
            value: code,
            checked: chosen.includes(code),
            onchange: (event) => {
              const list = f.config[kind][setting.key].filter((one) => one !== code);
              if (event.target.checked) list.push(code);
              f.config[kind][setting.key] = list;
            },
          }),
          " ",
          text,
        ),
      ),
    );
  });
}

// A program's settings in words ("対象の健診: 特定健康診査、がん検診"), or null.
function settingsLine(p) {
  const lines = (MODULE_SETTINGS[p.module] || [])
    .filter((setting) => Array.isArray(p.config?.[setting.key]) && p.config[setting.key].length)
    .map((setting) => {
      const names = setting.choices();
      return `${setting.label()}: ${p.config[setting.key].map((code) => names[code] || code).join(w().listJoin)}`;
    });
  return lines.length ? h("span", { class: "block quiet", "data-config": p.id }, lines.join(" / ")) : null;
}

const NEXT = { draft: ["active", "closed"], active: ["paused", "closed"], paused: ["active", "closed"], closed: [] };

function drawPrograms(s) {
  const f = s.form;
  const fy = fiscalYearNow();
  const programs = s.programs || [];
  const department = (id) => nameOf(s.departments.find((d) => d.id === id));
  const type = (id) => nameOf(s.types.find((t) => t.id === id));
  const create = () => {
    // A module's choices: at least one of each (the API would refuse the program without them).
    const kind = f.progModule || "fixed_award";
    const missing = (MODULE_SETTINGS[kind] || []).find((setting) => !(f.config?.[kind]?.[setting.key] || []).length);
    if (missing) {
      s.error = w().settingMissing(missing.label());
      s.done = null;
      s.refresh();
      return Promise.resolve(false);
    }
    return act(s, async () => {
      const body = {
        department_id: f.progDept || s.departments[0]?.id || "",
        point_type_id: f.progType || s.types[0]?.id || "",
        module: f.progModule || "fixed_award",
        name_ja: (f.progNameJa || "").trim(),
        name_en: (f.progNameEn || "").trim(),
        amount: numberOr(f.progAmount),
        valid_from: (f.progFrom || "").trim() || today(),
      };
      const code = (f.progBudgetCode || "").trim();
      if (code) body.budget_code = code;
      const settings = MODULE_SETTINGS[body.module] || [];
      if (settings.length) {
        const chosen = f.config?.[body.module] || {};
        body.config = Object.fromEntries(
          settings.map((setting) => [setting.key, Object.keys(setting.choices()).filter((one) => (chosen[setting.key] || []).includes(one))]),
        );
      }
      const made = await post(`${ADMIN}/programs`, body);
      s.programs = [...programs, made];
      for (const key of ["progNameJa", "progNameEn", "progAmount", "progBudgetCode"]) f[key] = "";
      f.config = {};
      s.done = w().programAdded(nameOf(made));
    });
  };
  const change = (p, to) =>
    ask(s, w().programAsk(nameOf(p), statusWord(to)), w().statusActs[to], async (reason) => {
      const changed = await post(`${ADMIN}/programs/${encodeURIComponent(p.id)}/status`, { status: to, reason });
      s.programs = programs.map((one) => (one.id === changed.id ? changed : one));
      s.done = w().programNow(nameOf(changed), statusWord(changed.status));
    }, to === "closed" ? w().programCloseDetail : null);
  const budgetCode = () =>
    act(s, async () => {
      const id = f.codeProgram || programs[0]?.id;
      const code = (f.budgetCodeValue || "").trim();
      const changed = await put(`${ADMIN}/programs/${encodeURIComponent(id)}/budget-code`, {
        budget_code: code || null,
        reason: (f.budgetCodeReason || "").trim(),
      });
      s.programs = programs.map((one) => (one.id === changed.id ? changed : one));
      f.budgetCodeValue = "";
      f.budgetCodeReason = "";
      s.done = w().budgetCodeSaved(nameOf(changed));
    });
  const allocate = () => {
    const id = f.allocProgram || programs[0]?.id;
    const amount = numberOr(f.allocAmount);
    const slot = `${id}/${fy}/${amount}`;
    if (!s.keys[slot]) s.keys[slot] = newKey();
    return act(s, async () => {
      let made;
      try {
        made = await post(
          `/api/v1/budgets/${encodeURIComponent(id)}/${fy}/allocations`,
          { amount, reason: (f.allocReason || "").trim() },
          s.keys[slot],
        );
      } catch (failure) {
        // A definite no: the next try is a new act. No answer: the same key, never twice.
        if (failure instanceof Refused) delete s.keys[slot];
        throw failure;
      }
      delete s.keys[slot];
      s.budgets[id] = made.budget;
      f.allocAmount = "";
      f.allocReason = "";
      s.done = w().allocated(money(amount));
    });
  };
  const programOptions = programs.map((p) => [p.id, nameOf(p)]);
  return [
    h("h1", {}, w().programsTitle),
    h("p", { class: "lead" }, w().programsLead),
    errorLine(s.error),
    s.done && h("p", { id: "done", class: "done-line", role: "status" }, s.done),
    confirmBox(s),
    s.programs === null
      ? h("p", { class: "quiet" }, w().loading)
      : table(
          "programs",
          [
            {
              label: w().name,
              value: (p) => [
                h("span", { class: "block" }, nameOf(p)),
                h("span", { class: "block quiet" }, `${type(p.point_type_id)} · ${w().modules[p.module] || p.module}`),
                settingsLine(p),
              ],
            },
            { label: w().department, value: (p) => department(p.department_id) },
            { label: w().perEvent, value: (p) => money(p.amount), numeric: true },
            { label: w().budgetCode, value: (p) => p.budget_code || w().none },
            { label: w().budgetOf(fy), value: (p) => budgetLine(s.budgets[p.id]), numeric: true },
            { label: w().status, value: (p) => h("span", { "data-status": p.status }, statusWord(p.status)) },
            {
              label: w().actions,
              value: (p) =>
                h(
                  "div",
                  { class: "row" },
                  NEXT[p.status]?.map((to) =>
                    press(s, `program-${to}-${p.id}`, w().statusActs[to], () => change(p, to), to === "closed" ? "danger" : "secondary", {
                      "aria-label": w().programActFor(w().statusActs[to], nameOf(p)),
                    }),
                  ),
                ),
            },
          ],
          programs,
          { empty: w().programsEmpty },
        ),
    h("h2", { id: "program-new-title" }, w().programNew),
    h("p", { class: "hint" }, w().programNewHint),
    h(
      "form",
      { id: "program-form", class: "row", "aria-labelledby": "program-new-title", onsubmit: (event) => event.preventDefault() },
      input(s, "program-name-ja", w().nameJa, "progNameJa"),
      input(s, "program-name-en", w().nameEn, "progNameEn"),
      choose(s, "program-department", w().department, "progDept", s.departments.map((d) => [d.id, nameOf(d)])),
      choose(s, "program-type", w().pointType, "progType", s.types.map((t) => [t.id, nameOf(t)])),
      h(
        "div",
        { class: "field" },
        h("label", { for: "program-module" }, w().module),
        h(
          "select",
          {
            id: "program-module",
            name: "progModule",
            onchange: (event) => {
              f.progModule = event.target.value;
              s.refresh();
            },
          },
          MODULES.map((kind) => h("option", { value: kind, selected: kind === (f.progModule || "fixed_award") }, w().modules[kind])),
        ),
      ),
      settingsFields(s, f.progModule || "fixed_award"),
      input(s, "program-amount", w().perEvent, "progAmount", { inputmode: "numeric" }),
      input(s, "program-from", w().validFrom, "progFrom", { type: "date" }),
      input(s, "program-budget-code", w().budgetCode, "progBudgetCode", {}, w().budgetCodeHint),
      press(s, "program-add", w().createDraft, create),
    ),
    programs.length > 0 && [
      h("h2", { id: "budget-code-title" }, w().budgetCodeChange),
      h(
        "form",
        { id: "budget-code-form", class: "row", "aria-labelledby": "budget-code-title", onsubmit: (event) => event.preventDefault() },
        choose(s, "budget-code-program", w().program, "codeProgram", programOptions),
        input(s, "budget-code-value", w().budgetCode, "budgetCodeValue", {}, w().budgetCodeHint),
        input(s, "budget-code-reason", w().reason, "budgetCodeReason"),
        press(s, "budget-code-save", w().save, budgetCode),
      ),
      h("h2", { id: "allocation-title" }, w().allocationTitle(fy)),
      h("p", { class: "hint" }, w().allocationHint),
      h(
        "form",
        { id: "allocation-form", class: "row", "aria-labelledby": "allocation-title", onsubmit: (event) => event.preventDefault() },
        choose(s, "allocation-program", w().program, "allocProgram", programOptions),
        input(s, "allocation-amount", w().allocationAmount, "allocAmount", { inputmode: "numeric" }),
        input(s, "allocation-reason", w().reason, "allocReason"),
        press(s, "allocation-add", w().allocate, allocate),
      ),
    ],
  ];
}

function budgetLine(budget) {
  if (!budget || budget.status === "none") return w().none;
  return [h("span", { class: "block" }, money(budget.remaining)), h("span", { class: "block quiet" }, w().budgetAll(money(budget.allocated)))];
}
