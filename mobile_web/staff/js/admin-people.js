// The admin PC's people and devices: staff (add, disable / re-enable, a device code for their PC)
// and the live device sessions (tills and staff PCs) with revoke, and the API tokens.
import { get, post } from "../../app/js/api.js";
import { errorLine, h, svgOf } from "../../app/js/dom.js";
import { table } from "./desk.js";
import {
  act,
  ask,
  choose,
  codePanel,
  confirmBox,
  everything,
  input,
  load,
  nameOf,
  press,
  screenOf,
  statusWord,
  w,
  when,
} from "./admin-kit.js";

const ADMIN = "/api/v1/admin";
const ROLES = ["counter", "issuer", "finance", "admin", "merchant"];

// --- Staff -------------------------------------------------------------------------------------

export function staffScreen() {
  const s = screenOf("admin-staff", "staff", drawStaff, { busy: true, staff: null, departments: [], merchants: [], code: null });
  loadStaff(s);
}

function loadStaff(s) {
  return load(s, async () => {
    const [staff, departments, merchants] = await Promise.all([
      everything(get, `${ADMIN}/staff`),
      everything(get, `${ADMIN}/departments`),
      everything(get, `${ADMIN}/merchants`),
    ]);
    Object.assign(s, { staff, departments, merchants });
  });
}

function drawStaff(s) {
  const f = s.form;
  const department = (id) => nameOf(s.departments.find((one) => one.id === id));
  const merchant = (id) => nameOf(s.merchants.find((one) => one.id === id));
  const add = () =>
    act(s, async () => {
      const body = { role: f.role || "counter", display_name: (f.displayName || "").trim() };
      if (body.role === "issuer") body.department_id = f.departmentId || null;
      if (body.role === "merchant") body.merchant_id = f.merchantId || null;
      const made = await post(`${ADMIN}/staff`, body);
      s.staff = [...s.staff, made];
      f.displayName = "";
      s.done = w().staffAdded(made.display_name);
    });
  const code = (one) =>
    act(s, async () => {
      s.code = await post(`${ADMIN}/device-codes`, { staff_id: one.id });
      requestAnimationFrame(() => document.getElementById("device-code-panel")?.scrollIntoView());
    });
  const status = (one, to, title, yes) =>
    ask(s, title, yes, async (reason) => {
      const changed = await post(`${ADMIN}/staff/${encodeURIComponent(one.id)}/status`, { status: to, reason });
      s.staff = s.staff.map((x) => (x.id === changed.id ? changed : x));
      s.done = w().staffNow(changed.display_name, statusWord(changed.status));
    }, to === "disabled" ? w().staffDisableDetail : null);
  const role = f.role || "counter";
  return [
    h("h1", {}, w().staffTitle),
    h("p", { class: "lead" }, w().staffLead),
    errorLine(s.error),
    s.done && h("p", { id: "done", class: "done-line", role: "status" }, s.done),
    confirmBox(s),
    codePanel(s.code, svgOf),
    h("h2", { id: "staff-new-title" }, w().staffNew),
    h(
      "form",
      { id: "staff-form", class: "row", "aria-labelledby": "staff-new-title", onsubmit: (event) => event.preventDefault() },
      input(s, "staff-name", w().displayName, "displayName"),
      h(
        "div",
        { class: "field" },
        h("label", { for: "staff-role" }, w().role),
        h(
          "select",
          {
            id: "staff-role",
            onchange: (event) => {
              f.role = event.target.value;
              s.refresh();
            },
          },
          ROLES.map((value) => h("option", { value, selected: value === role }, w().roleWords[value])),
        ),
      ),
      role === "issuer" &&
        choose(s, "staff-department", w().department, "departmentId", s.departments.map((d) => [d.id, nameOf(d)])),
      role === "merchant" &&
        choose(s, "staff-merchant", w().merchant, "merchantId", s.merchants.map((m) => [m.id, nameOf(m)])),
      press(s, "staff-add", w().add, add),
    ),
    h("h2", {}, w().staffList),
    s.staff === null
      ? h("p", { class: "quiet" }, w().loading)
      : table(
          "staff",
          [
            { label: w().displayName, key: "display_name" },
            { label: w().role, value: (one) => w().roleWords[one.role] || one.role },
            { label: w().belongsTo, value: (one) => department(one.department_id) || merchant(one.merchant_id) || "" },
            { label: w().status, value: (one) => statusWord(one.status) },
            {
              label: w().actions,
              value: (one) =>
                h(
                  "div",
                  { class: "row" },
                  one.status === "active" &&
                    one.role !== "merchant" &&
                    press(s, `code-${one.id}`, w().deviceCode, () => code(one), "primary", { "aria-label": w().deviceCodeFor(one.display_name) }),
                  one.status === "active"
                    ? press(s, `disable-${one.id}`, w().disable, () => status(one, "disabled", w().disableAsk(one.display_name), w().disable), "danger", { "aria-label": w().disableFor(one.display_name) })
                    : press(s, `enable-${one.id}`, w().enable, () => status(one, "active", w().enableAsk(one.display_name), w().enable), "secondary", { "aria-label": w().enableFor(one.display_name) }),
                ),
            },
          ],
          s.staff,
          { empty: w().staffEmpty },
        ),
  ];
}

// --- Devices and tokens ------------------------------------------------------------------------

export function sessionsScreen() {
  const s = screenOf("admin-sessions", "sessions", drawSessions, { busy: true, sessions: null, tokens: null });
  loadSessions(s);
}

function loadSessions(s) {
  return load(s, async () => {
    const [sessions, tokens] = await Promise.all([
      get(`${ADMIN}/device-sessions`),
      everything(get, `${ADMIN}/tokens`, 5000),
    ]);
    s.sessions = sessions;
    // The API tokens of other systems: not the devices' own (listed above), not residents'.
    const devices = new Set(sessions.map((one) => one.token_id));
    s.tokens = tokens.filter(
      (token) =>
        !devices.has(token.id) &&
        token.role !== "resident" &&
        !token.revoked_at &&
        new Date(token.expires_at) > new Date(),
    );
  });
}

function drawSessions(s) {
  const revoke = (label, tokenId) =>
    ask(s, w().sessionRevokeAsk(label), w().revoke, async (reason) => {
      await post(`${ADMIN}/tokens/${encodeURIComponent(tokenId)}/revoke`, { reason });
      s.sessions = (s.sessions || []).filter((one) => one.token_id !== tokenId);
      s.tokens = (s.tokens || []).filter((one) => one.id !== tokenId);
      s.done = w().sessionRevoked(label);
    }, w().sessionRevokeDetail);
  return [
    h("h1", {}, w().sessionsTitle),
    h("p", { class: "lead" }, w().sessionsLead),
    errorLine(s.error),
    s.done && h("p", { id: "done", class: "done-line", role: "status" }, s.done),
    confirmBox(s),
    h("h2", {}, w().deviceSessions),
    s.sessions === null
      ? h("p", { class: "quiet" }, w().loading)
      : table(
          "device-sessions",
          [
            { label: w().device, value: (one) => one.label || one.token_prefix },
            { label: w().role, value: (one) => w().roleWords[one.role] || one.role },
            { label: w().enrolled, value: (one) => when(one.enrolled_at) },
            { label: w().lapses, value: (one) => when(one.expires_at) },
            {
              label: w().actions,
              value: (one) =>
                press(s, `revoke-${one.token_id}`, w().revoke, () => revoke(one.label || one.token_prefix, one.token_id), "danger", {
                  "aria-label": w().revokeFor(one.label || one.token_prefix),
                  "data-token": one.token_id,
                }),
            },
          ],
          s.sessions,
          { empty: w().sessionsEmpty },
        ),
    h("h2", {}, w().tokens),
    h("p", { class: "hint" }, w().tokensLead),
    s.tokens === null
      ? h("p", { class: "quiet" }, w().loading)
      : table(
          "tokens",
          [
            { label: w().prefix, value: (one) => h("span", { class: "mono" }, one.prefix) },
            { label: w().role, value: (one) => w().roleWords[one.role] || one.role },
            { label: w().tokenLabel, key: "label" },
            { label: w().issued, value: (one) => when(one.created_at) },
            { label: w().lapses, value: (one) => when(one.expires_at) },
            {
              label: w().actions,
              value: (one) =>
                press(s, `token-revoke-${one.id}`, w().revoke, () => revoke(one.label || one.prefix, one.id), "danger", {
                  "aria-label": w().revokeFor(one.label || one.prefix),
                }),
            },
          ],
          s.tokens,
          { empty: w().tokensEmpty },
        ),
  ];
}
