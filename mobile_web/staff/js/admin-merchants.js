// The admin PC's merchants: the list and registering one; a merchant's page with its status, its
// payment settings, its tills (add, revoke, a new store QR, a device code that enrols the till)
// and where it is paid (bank details, shown masked).
import { Refused, call, get, post, put } from "../../app/js/api.js";
import { h, link, svgOf } from "../../app/js/dom.js";
import { money } from "../../app/js/i18n.js";
import { go } from "./common.js";
import { sums, table } from "./desk.js";
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
  say,
  screenOf,
  statusWord,
  w,
  when,
} from "./admin-kit.js";
import { errorLine } from "../../app/js/dom.js";

const ADMIN = "/api/v1/admin";

// --- The list ----------------------------------------------------------------------------------

export function merchantsScreen() {
  const s = screenOf("admin-merchants", "merchants", draw, { busy: true, merchants: null });
  loadMerchants(s);
}

function loadMerchants(s) {
  return load(s, async () => {
    s.merchants = await everything(get, `${ADMIN}/merchants`);
  });
}

function draw(s) {
  return [
    h("h1", {}, w().merchantsTitle),
    h("p", { class: "lead" }, w().merchantsLead),
    errorLine(s.error),
    h("h2", { id: "merchant-new-title" }, w().merchantNew),
    h(
      "form",
      { id: "merchant-form", class: "row", "aria-labelledby": "merchant-new-title", onsubmit: (event) => event.preventDefault() },
      input(s, "merchant-name-ja", w().nameJa, "nameJa"),
      input(s, "merchant-name-en", w().nameEn, "nameEn"),
      input(s, "merchant-category", w().category, "category", {}, w().categoryHint),
      choose(s, "merchant-kind", w().kind, "kind", [
        ["shop", w().kindWords.shop],
        ["counter", w().kindWords.counter],
      ]),
      press(s, "merchant-add", w().register, () => register(s)),
    ),
    h("h2", {}, w().merchantList),
    s.merchants === null
      ? h("p", { class: "quiet" }, w().loading)
      : table(
          "merchants",
          [
            {
              label: w().name,
              value: (m) => h("a", { href: `#/merchants/${encodeURIComponent(m.id)}`, "data-merchant": m.id }, nameOf(m)),
            },
            { label: w().category, key: "category" },
            { label: w().kind, value: (m) => w().kindWords[m.kind] || m.kind },
            { label: w().status, value: (m) => statusWord(m.status) },
            { label: w().since, value: (m) => when(m.created_at) },
          ],
          s.merchants,
          { empty: w().merchantsEmpty },
        ),
  ];
}

async function register(s) {
  const f = s.form;
  let made = null;
  const done = await act(s, async () => {
    made = await post(`${ADMIN}/merchants`, {
      name_ja: (f.nameJa || "").trim(),
      name_en: (f.nameEn || "").trim(),
      category: (f.category || "").trim(),
      kind: f.kind || "shop",
    });
  });
  if (done && made) go(`#/merchants/${encodeURIComponent(made.id)}`);
}

// --- One merchant ------------------------------------------------------------------------------

export function merchantScreen(id) {
  if (!id) return merchantsScreen();
  const s = screenOf("admin-merchant", "merchants", drawOne, { busy: true,
    id,
    merchant: null,
    settings: null,
    tills: null,
    bank: undefined,
    pointTypes: [],
    code: null,
    done: null,
  });
  loadOne(s);
}

async function loadOne(s) {
  const base = `${ADMIN}/merchants/${encodeURIComponent(s.id)}`;
  try {
    const [merchant, settings, tills, pointTypes] = await Promise.all([
      get(base),
      get(`${base}/settings`),
      get(`${base}/tills`),
      get(`${ADMIN}/point-types`),
    ]);
    Object.assign(s, { merchant, settings, tills, pointTypes });
    s.bank = await bankOf(s.id);
  } catch (failure) {
    s.error = say(failure);
  }
  s.busy = false;
  s.refresh();
}

async function bankOf(id) {
  try {
    return await get(`${ADMIN}/merchants/${encodeURIComponent(id)}/bank-account`);
  } catch (failure) {
    if (failure instanceof Refused && failure.problem.status === 404) return null;
    throw failure;
  }
}

function drawOne(s) {
  const m = s.merchant;
  return [
    h("h1", {}, m ? w().merchantTitle(nameOf(m)) : w().merchantsTitle),
    link("back-merchants", w().backMerchants, "#/merchants"),
    errorLine(s.error),
    s.done && h("p", { id: "done", class: "done-line", role: "status" }, s.done),
    confirmBox(s),
    codePanel(s.code, svgOf),
    m && statusPart(s, m),
    s.tills && tillsPart(s),
    s.settings && settingsPart(s),
    s.bank !== undefined && bankPart(s),
  ];
}

function statusPart(s, m) {
  const base = `${ADMIN}/merchants/${encodeURIComponent(m.id)}`;
  const change = (status, title, yes) =>
    ask(s, title, yes, async (reason) => {
      s.merchant = await post(`${base}/status`, { status, reason });
      s.done = w().statusNow(statusWord(s.merchant.status));
    });
  return [
    h("h2", {}, w().merchantAbout),
    sums("merchant-sums", [
      [w().status, h("span", { id: "merchant-status" }, statusWord(m.status))],
      [w().kind, w().kindWords[m.kind] || m.kind],
      [w().category, m.category],
      [w().nameEn, m.name_en],
    ]),
    h(
      "div",
      { class: "row" },
      m.status === "active" && press(s, "merchant-suspend", w().suspend, () => change("suspended", w().suspendAsk(nameOf(m)), w().suspend), "secondary"),
      m.status === "suspended" && press(s, "merchant-reactivate", w().reactivate, () => change("active", w().reactivateAsk(nameOf(m)), w().reactivate), "secondary"),
      m.status !== "closed" && press(s, "merchant-close", w().close, () => change("closed", w().closeAsk(nameOf(m)), w().close), "danger"),
    ),
  ];
}

function tillsPart(s) {
  const add = async () => {
    const name = (s.form.tillName || "").trim();
    await act(s, async () => {
      const made = await post(`${ADMIN}/merchants/${encodeURIComponent(s.id)}/tills`, { name });
      s.tills = [...s.tills, made];
      s.form.tillName = "";
      s.done = w().tillAdded(made.name);
    });
  };
  const code = (till) =>
    act(s, async () => {
      s.code = await post(`${ADMIN}/device-codes`, { till_id: till.id });
      s.done = null;
      requestAnimationFrame(() => document.getElementById("device-code-panel")?.scrollIntoView());
    });
  const revoke = (till) =>
    ask(s, w().tillRevokeAsk(till.name), w().revoke, async (reason) => {
      const changed = await post(`${ADMIN}/tills/${encodeURIComponent(till.id)}/revoke`, { reason });
      s.tills = s.tills.map((one) => (one.id === changed.id ? changed : one));
      s.done = w().tillRevoked(till.name);
    }, w().tillRevokeDetail);
  const reissue = (till) =>
    ask(s, w().qrReissueAsk(till.name), w().qrReissue, async (reason) => {
      const changed = await post(`${ADMIN}/tills/${encodeURIComponent(till.id)}/store-qr`, { reason });
      s.tills = s.tills.map((one) => (one.id === changed.id ? changed : one));
      s.shownQr = changed.id;
      s.done = w().qrReissued(till.name);
    }, w().qrReissueDetail);
  const shown = s.tills.find((till) => till.id === s.shownQr && till.store_qr_svg);
  return [
    h("h2", { id: "tills-title" }, w().tills),
    table(
      "tills",
      [
        { label: w().tillName, key: "name" },
        { label: w().status, value: (till) => statusWord(till.status) },
        { label: w().since, value: (till) => when(till.created_at) },
        {
          label: w().actions,
          value: (till) =>
            till.status === "active"
              ? h(
                  "div",
                  { class: "row" },
                  press(s, `code-${till.id}`, w().deviceCode, () => code(till), "primary", { "data-till": till.id, "aria-label": w().deviceCodeFor(till.name) }),
                  press(s, `qr-${till.id}`, w().storeQr, () => {
                    s.shownQr = s.shownQr === till.id ? null : till.id;
                    s.refresh();
                  }, "secondary", { "aria-label": w().storeQrFor(till.name) }),
                  press(s, `reissue-${till.id}`, w().qrReissue, () => reissue(till), "secondary", { "aria-label": w().qrReissueFor(till.name) }),
                  press(s, `revoke-${till.id}`, w().revoke, () => revoke(till), "danger", { "aria-label": w().revokeFor(till.name) }),
                )
              : "",
        },
      ],
      s.tills,
      { empty: w().tillsEmpty },
    ),
    shown &&
      h(
        "div",
        { id: "store-qr", class: "store-qr" },
        h("h3", {}, w().storeQrOf(shown.name)),
        h("div", { class: "code-qr", role: "img", "aria-label": w().storeQrOf(shown.name) }, svgOf(shown.store_qr_svg)),
        h("p", { class: "hint" }, w().storeQrHow),
      ),
    h(
      "form",
      { class: "row", onsubmit: (event) => event.preventDefault() },
      input(s, "till-name", w().tillName, "tillName", {}, w().tillNameHint),
      press(s, "till-add", w().tillAdd, add),
    ),
  ];
}

function settingsPart(s) {
  const st = s.settings;
  const f = s.form;
  if (f.accepted === undefined) f.accepted = [...st.accepted_point_types];
  if (f.refundDays === undefined) f.refundDays = String(st.refund_window_days);
  if (f.confirmMode === undefined) f.confirmMode = st.confirm_mode;
  const save = () =>
    act(s, async () => {
      const days = Number(f.refundDays);
      s.settings = await call("PATCH", `${ADMIN}/merchants/${encodeURIComponent(s.id)}/settings`, {
        body: {
          accepted_point_types: f.accepted,
          confirm_mode: f.confirmMode,
          refund_window_days: Number.isInteger(days) && String(f.refundDays).trim() !== "" ? days : -1,
          reason: (f.settingsReason || "").trim(),
        },
      });
      f.settingsReason = "";
      s.done = w().settingsSaved;
    });
  const typeName = (code) => nameOf(s.pointTypes.find((type) => type.code === code)) || code;
  return [
    h("h2", {}, w().settings),
    sums("settings-sums", [
      [w().accepted, st.accepted_point_types.map(typeName).join(w().listJoin) || w().none],
      [w().confirmMode, w().confirmModes[st.confirm_mode] || st.confirm_mode],
      [w().refundWindow, w().days(st.refund_window_days)],
      [w().fee, w().feeOf(st.fee_bps)],
      [w().autoConfirmMax, money(st.auto_confirm_max)],
    ]),
    h(
      "form",
      { id: "settings-form", class: "row", onsubmit: (event) => event.preventDefault() },
      h(
        "fieldset",
        {},
        h("legend", {}, w().accepted),
        s.pointTypes.map((type) =>
          h(
            "label",
            { class: "choice" },
            h("input", {
              type: "checkbox",
              id: `accept-${type.code}`,
              checked: f.accepted.includes(type.code),
              onchange: (event) => {
                f.accepted = event.target.checked
                  ? [...f.accepted, type.code]
                  : f.accepted.filter((code) => code !== type.code);
              },
            }),
            nameOf(type),
          ),
        ),
      ),
      choose(s, "confirm-mode", w().confirmMode, "confirmMode", [
        ["confirm_each", w().confirmModes.confirm_each],
        ["auto_confirm", w().confirmModes.auto_confirm],
      ]),
      input(s, "refund-days", w().refundWindow, "refundDays", { inputmode: "numeric" }),
      input(s, "settings-reason", w().reason, "settingsReason"),
      press(s, "settings-save", w().save, save),
    ),
  ];
}

function bankPart(s) {
  const f = s.form;
  const base = `${ADMIN}/merchants/${encodeURIComponent(s.id)}/bank-account`;
  const save = () =>
    act(s, async () => {
      s.bank = await put(base, {
        bank_code: (f.bankCode || "").trim(),
        branch_code: (f.branchCode || "").trim(),
        account_type: f.accountType || "1",
        account_number: (f.accountNumber || "").trim(),
        holder_name: (f.holderName || "").trim(),
        reason: (f.bankReason || "").trim(),
      });
      for (const key of ["bankCode", "branchCode", "accountNumber", "holderName", "bankReason"]) f[key] = "";
      s.done = w().bankSaved;
    });
  const remove = () =>
    ask(s, w().bankRemoveAsk, w().remove, async (reason) => {
      await post(`${base}/remove`, { reason });
      s.bank = null;
      s.done = w().bankRemoved;
    }, w().bankRemoveDetail);
  const b = s.bank;
  return [
    h("h2", {}, w().bank),
    b
      ? [
          sums("bank-shown", [
            [w().bankCode, b.bank_code],
            [w().branchCode, b.branch_code],
            [w().accountType, w().accountTypes[b.account_type] || b.account_type_name],
            [w().accountNumber, h("span", { id: "bank-number" }, b.account_number)],
            [w().holderName, h("span", { id: "bank-holder" }, b.holder_kana)],
          ]),
          h("p", { class: "hint" }, w().bankMasked),
          press(s, "bank-remove", w().bankRemove, remove, "danger"),
        ]
      : h("p", { id: "bank-none", class: "quiet" }, w().bankNone),
    h("h3", {}, b ? w().bankReplace : w().bankSet),
    h(
      "form",
      { id: "bank-form", class: "row", onsubmit: (event) => event.preventDefault() },
      input(s, "bank-code", w().bankCode, "bankCode", { inputmode: "numeric", maxlength: "4" }, w().bankCodeHint),
      input(s, "branch-code", w().branchCode, "branchCode", { inputmode: "numeric", maxlength: "3" }, w().branchCodeHint),
      choose(s, "account-type", w().accountType, "accountType", [
        ["1", w().accountTypes["1"]],
        ["2", w().accountTypes["2"]],
        ["4", w().accountTypes["4"]],
        ["9", w().accountTypes["9"]],
      ]),
      input(s, "account-number", w().accountNumber, "accountNumber", { inputmode: "numeric", maxlength: "7" }, w().accountNumberHint),
      input(s, "holder-name", w().holderName, "holderName", {}, w().holderNameHint),
      input(s, "bank-reason", w().reason, "bankReason"),
      press(s, "bank-save", w().save, save),
    ),
  ];
}
