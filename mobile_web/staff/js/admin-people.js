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
  const s = screenOf("admin-staff", "staff", drawStaff, { busy: true, staff: null, departments: [], merchants: [], code: null, tillStaff: new Set() });
  loadStaff(s);
}

function loadStaff(s) {
  return load(s, async () => {
    const [staff, departments, merchants] = await Promise.all([
      everything(get, `${ADMIN}/staff`),
      everything(get, `${ADMIN}/departments`),
      everything(get, `${ADMIN}/merchants`),
    ]);
    // A till's own staff account (role merchant) belongs on its shop's page: the tills of the
    // shops that have such accounts say which they are.
    const shops = [...new Set(staff.filter((one) => one.role === "merchant" && one.merchant_id).map((one) => one.merchant_id))];
    const tills = await Promise.all(
      shops.map((id) => get(`${ADMIN}/merchants/${encodeURIComponent(id)}/tills`).catch(() => [])),
    );
    Object.assign(s, { staff, departments, merchants, tillStaff: new Set(tills.flat().map((till) => till.staff_id)) });
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
  // Disable an active member of staff, or enable a disabled one again (after a confirmation).
  const onOff = (one) =>
    one.status === "active"
      ? press(s, `disable-${one.id}`, w().disable, () => status(one, "disabled", w().disableAsk(one.display_name), w().disable), "danger", { "aria-label": w().disableFor(one.display_name) })
      : press(s, `enable-${one.id}`, w().enable, () => status(one, "active", w().enableAsk(one.display_name), w().enable), "secondary", { "aria-label": w().enableFor(one.display_name) });
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
                  onOff(one),
                ),
            },
          ],
          s.staff.filter((one) => one.role !== "merchant"),
          { empty: w().staffEmpty },
        ),
    h("h2", { id: "shop-accounts-title" }, w().shopAccounts),
    h("p", { class: "hint" }, w().shopAccountsHint),
    s.staff === null
      ? h("p", { class: "quiet" }, w().loading)
      : table(
          "shop-accounts",
          [
            { label: w().displayName, key: "display_name" },
            { label: w().accountKind, value: (one) => h("span", { "data-kind": s.tillStaff.has(one.id) ? "till" : "account" }, s.tillStaff.has(one.id) ? w().tillAccount : w().shopAccount) },
            {
              label: w().merchant,
              value: (one) =>
                one.merchant_id ? h("a", { href: `#/merchants/${encodeURIComponent(one.merchant_id)}` }, merchant(one.merchant_id) || one.merchant_id) : "",
            },
            { label: w().status, value: (one) => statusWord(one.status) },
            {
              label: w().actions,
              value: (one) =>
                s.tillStaff.has(one.id)
                  ? h("span", { class: "quiet" }, w().tillOnShopPage)
                  : onOff(one),
            },
          ],
          s.staff.filter((one) => one.role === "merchant"),
          { empty: w().shopAccountsEmpty },
        ),
  ];
}

// --- Devices and tokens ------------------------------------------------------------------------

export function sessionsScreen() {
  const s = screenOf("admin-sessions", "sessions", drawSessions, { busy: true, sessions: null, tokens: null, staff: null, issued: null, copied: null });
  loadSessions(s);
}

function loadSessions(s) {
  return load(s, async () => {
    // The API tokens of other systems (kind=api: not the devices' sessions listed above, not
    // residents'), live ones only; the staff they may be issued for.
    const [sessions, tokens, staff] = await Promise.all([
      get(`${ADMIN}/device-sessions`),
      everything(get, `${ADMIN}/tokens?kind=api&state=live`),
      everything(get, `${ADMIN}/staff`),
    ]);
    Object.assign(s, { sessions, tokens, staff });
  });
}

// A token just issued: its secret large, a copy button, and that it is shown this once.
function tokenPanel(s) {
  const made = s.issued;
  if (!made) return null;
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(made.token);
      s.copied = w().tokenCopied;
    } catch {
      // No clipboard (an old browser, a denied permission): the text is selected to copy by hand.
      window.getSelection()?.selectAllChildren(document.getElementById("token-secret"));
      s.copied = w().tokenCopyByHand;
    }
    s.refresh();
  };
  return h(
    "div",
    { id: "token-panel", class: "device-code token-panel" },
    h("h2", {}, w().tokenShownTitle(made.label || made.prefix)),
    h("p", { class: "label" }, w().tokenSecret),
    h("p", { id: "token-secret", class: "token-secret mono" }, made.token),
    h("p", { id: "token-once", class: "warning" }, w().tokenOnce),
    h(
      "div",
      { class: "row" },
      press(s, "token-copy", w().tokenCopy, copy, "primary"),
      s.copied && h("span", { id: "token-copied", role: "status" }, s.copied),
    ),
  );
}

function drawSessions(s) {
  const revoke = (label, tokenId) =>
    ask(s, w().sessionRevokeAsk(label), w().revoke, async (reason) => {
      await post(`${ADMIN}/tokens/${encodeURIComponent(tokenId)}/revoke`, { reason });
      s.sessions = (s.sessions || []).filter((one) => one.token_id !== tokenId);
      s.tokens = (s.tokens || []).filter((one) => one.id !== tokenId);
      s.done = w().sessionRevoked(label);
    }, w().sessionRevokeDetail);
  const f = s.form;
  // Staff an API token may act as: active office staff first (the usual holder: an accounting
  // system acting as finance), then shops' accounts (a shop's own system), so a till is never
  // the choice made by default.
  const holders = (s.staff || [])
    .filter((one) => one.status === "active")
    .sort((a, b) => Number(a.role === "merchant") - Number(b.role === "merchant"));
  const issue = () =>
    act(s, async () => {
      const holder = holders.find((one) => one.id === f.tokenHolder) || holders[0];
      const label = (f.tokenLabel || "").trim();
      const body = { role: holder?.role || "", principal_id: holder?.id || "", label };
      const days = String(f.tokenDays ?? "").trim();
      if (days) body.lifetime_days = /^[0-9]+$/.test(days) ? Number(days) : -1;
      const made = await post(`${ADMIN}/tokens`, body);
      s.issued = { ...made, label };
      s.copied = null;
      s.tokens = [
        ...(s.tokens || []),
        { ...made, label, created_at: new Date().toISOString(), revoked_at: null },
      ];
      f.tokenLabel = "";
      f.tokenDays = "";
      s.done = w().tokenIssued(label || made.prefix);
      requestAnimationFrame(() => document.getElementById("token-panel")?.scrollIntoView({ block: "nearest" }));
    });
  const holderName = (id) => (s.staff || []).find((one) => one.id === id)?.display_name || "";
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
            { label: w().tokenHolder, value: (one) => holderName(one.principal_id) },
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
    tokenPanel(s),
    h("h2", { id: "token-new-title" }, w().tokenNew),
    h("p", { class: "hint" }, w().tokenNewHint),
    s.staff !== null && holders.length === 0
      ? h("p", { id: "token-no-staff", class: "quiet" }, w().tokenNoStaff)
      : h(
          "form",
          { id: "token-form", class: "row", "aria-labelledby": "token-new-title", onsubmit: (event) => event.preventDefault() },
          choose(s, "token-holder", w().tokenHolder, "tokenHolder", holders.map((one) => [one.id, w().tokenHolderOf(one.display_name, w().roleWords[one.role] || one.role)])),
          input(s, "token-label", w().tokenLabel, "tokenLabel", {}, w().tokenLabelHint),
          input(s, "token-days", w().tokenDays, "tokenDays", { inputmode: "numeric", placeholder: "90" }, w().tokenDaysHint),
          press(s, "token-issue", w().tokenIssue, issue),
        ),
  ];
}
