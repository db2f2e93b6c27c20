// Awarding: one resident by their address number (looked up first: is a wallet open?), with a
// confirmation before the points move; a CSV file, checked row by row before anything is
// awarded and offered for awarding only when clean; an upload's outcome (and the cancelling of
// one that stopped). Every act that moves points keeps its Idempotency-Key until a definite
// answer, and its button is disabled while the request is out.
import { Refused, get, newKey, post } from "../../app/js/api.js";
import { button, errorLine, h, link, redraw } from "../../app/js/dom.js";
import { day, lang, money, moment } from "../../app/js/i18n.js";
import { go } from "./common.js";
import { budgetSums } from "./department.js";
import {
  ISSUER,
  act,
  actFor,
  load,
  loadPrograms,
  nameOf,
  postCsv,
  programTop,
  thisFiscalYear,
  tokyoToday,
  w,
  why,
} from "./department-common.js";
import { desk, field, sums, table } from "./desk.js";

const CHECKUPS = ["specific_health_checkup", "elderly_health_checkup", "cancer_screening", "dental_checkup", "comprehensive_checkup"];

function input(id, value, onInput, extra = {}) {
  return h("input", { id, value: value ?? "", oninput: (event) => onInput(event.target.value), ...extra });
}

// --- One resident ----------------------------------------------------------------------------

export function awardScreen(detail) {
  const state = {
    programs: null,
    programId: detail || "",
    address: "",
    found: null, // { resident_id, wallet_open, address }
    record: "",
    occurredOn: tokyoToday(),
    detailValue: "",
    confirming: false,
    busy: false,
    key: null,
    result: null,
    budget: null,
    error: null,
    refresh: () => redraw(screen),
  };
  let screen = null;
  const program = () => (state.programs || []).find((item) => item.id === state.programId);
  const actions = {
    choose(id) {
      go(`#/award/${encodeURIComponent(id)}`);
    },
    async lookUp() {
      state.error = null;
      state.found = null;
      state.confirming = false;
      const number = state.address.trim();
      if (!/^\d{1,20}$/.test(number)) {
        state.error = w().addressInvalid;
        return redraw(screen);
      }
      state.busy = true;
      redraw(screen);
      try {
        const found = await get(`${ISSUER}/residents?${new URLSearchParams({ address_number: number })}`);
        state.found = { ...found, address: number };
      } catch (failure) {
        state.error = failure instanceof Refused && failure.problem.code === "not_found" ? w().residentUnknown : why(failure);
      }
      state.busy = false;
      redraw(screen);
    },
    review() {
      state.error = null;
      if (!state.found || state.found.address !== state.address.trim()) state.error = w().lookUpFirst;
      else if (!state.record.trim()) state.error = w().recordMissing;
      else if (program() && program().module !== "fixed_award" && !state.detailValue.trim()) state.error = w().detailMissing;
      else {
        state.confirming = true;
        state.key = state.key || newKey();
      }
      redraw(screen);
    },
    back() {
      state.confirming = false;
      state.key = null;
      redraw(screen);
    },
    award() {
      if (state.busy) return;
      const chosen = program();
      const details = {};
      if (chosen.module === "health_checkup") details.checkup_type = state.detailValue;
      if (chosen.module === "volunteering") details.event_id = state.detailValue.trim();
      const body = { address_number: state.found.address, record_id: state.record.trim(), details };
      if (state.occurredOn) body.occurred_on = state.occurredOn;
      const path = `${ISSUER}/programs/${encodeURIComponent(chosen.id)}`;
      const refused = (failure) => {
        // A refusal is definite: the key goes; a cut connection keeps it for the retry.
        if (failure instanceof Refused) {
          state.key = null;
          state.confirming = false;
        }
      };
      return act(state, async () => {
        state.result = await post(`${path}/awards`, body, state.key);
        state.key = null;
        state.confirming = false;
        state.budget = await get(`${path}/budgets/${state.result.fiscal_year}`).catch(() => null);
      }, refused);
    },
    another() {
      Object.assign(state, { address: "", found: null, record: "", detailValue: "", result: null, budget: null, error: null });
      redraw(screen);
    },
  };
  screen = desk("department-award", () => drawAward(state, actions), "award");
  load(state, async () => {
    state.programs = (await loadPrograms()).filter((item) => item.status === "active");
  });
}

function detailField(chosen, state) {
  if (chosen.module === "health_checkup") {
    const allowed = (chosen.config && chosen.config.checkup_types) || CHECKUPS;
    const select = h(
      "select",
      { id: "checkup-type", onchange: (event) => (state.detailValue = event.target.value) },
      h("option", { value: "" }, w().chooseCheckup),
      allowed.map((code) => h("option", { value: code, selected: code === state.detailValue }, w().checkups[code] || code)),
    );
    return field("checkup-type", w().checkupType, select);
  }
  if (chosen.module === "volunteering") {
    return field("event-id", w().eventId, input("event-id", state.detailValue, (v) => (state.detailValue = v)));
  }
  return null;
}

function drawAward(state, actions) {
  const { early, chosen, head, chooser } = programTop(state, "award-program", w().awardTitle, w().awardIntro, actions.choose);
  if (early) return early;
  if (state.result) {
    const award = state.result;
    return [
      ...head,
      h("h2", { id: "award-done" }, award.replayed ? w().awardReplayed : w().awardDone),
      sums("award-result", [
        [w().program, nameOf(chosen)],
        [w().addressNumber, state.found.address],
        [w().amount, h("span", { id: "award-amount" }, money(award.amount))],
        [w().recordId, award.record_id],
        [w().occurredOn, day(award.occurred_on)],
        [w().validUntil, award.valid_until ? day(award.valid_until) : w().never],
      ]),
      state.budget && [h("h2", {}, w().budgetAfter(state.budget.fiscal_year)), budgetSums("budget-after", state.budget)],
      errorLine(state.error),
      h("div", { class: "row" }, button("award-another", w().awardAnother, actions.another), link("award-program-page", w().programPage, `#/program/${encodeURIComponent(chosen.id)}`)),
    ];
  }
  if (state.confirming) {
    return [
      ...head,
      h("h2", { id: "confirm-title" }, w().confirmAward),
      sums("award-review", [
        [w().program, nameOf(chosen)],
        [w().addressNumber, state.found.address],
        [w().amount, money(chosen.amount)],
        [w().recordId, state.record.trim()],
        [w().occurredOn, state.occurredOn ? day(state.occurredOn) : day(tokyoToday())],
      ]),
      h("p", { class: "warning" }, w().cannotUndo),
      errorLine(state.error),
      h(
        "div",
        { class: "row" },
        h("button", { id: "award-confirm", type: "button", class: "button primary", disabled: state.busy, onclick: actions.award }, state.busy ? w().sending : w().awardNow(money(chosen.amount))),
        h("button", { id: "award-back", type: "button", class: "button secondary", disabled: state.busy, onclick: actions.back }, w().back),
      ),
    ];
  }
  const found = state.found && state.found.address === state.address.trim() ? state.found : null;
  return [
    ...head,
    chooser,
    h("p", { id: "award-per" }, w().perAwardIs(money(chosen.amount))),
    h(
      "div",
      { class: "row" },
      field("address-number", w().addressNumber, input("address-number", state.address, (v) => (state.address = v), { inputmode: "numeric", autocomplete: "off", maxlength: "20" }), w().addressHint),
      h("button", { id: "look-up", type: "button", class: "button secondary", disabled: state.busy, onclick: actions.lookUp }, w().lookUp),
    ),
    found &&
      h(
        "p",
        { id: "resident-found", class: "staff-line", role: "status" },
        found.wallet_open ? w().walletOpen : w().walletNotYet,
      ),
    errorLine(state.error),
    found && [
      h(
        "div",
        { class: "row" },
        field("record-id", w().recordId, input("record-id", state.record, (v) => (state.record = v), { autocomplete: "off", maxlength: "64" }), w().recordHint),
        field("occurred-on", w().occurredOn, input("occurred-on", state.occurredOn, (v) => (state.occurredOn = v), { type: "date" })),
        detailField(chosen, state),
      ),
      h("div", { class: "row" }, button("award-review-go", w().reviewAward, actions.review)),
    ],
  ];
}

// --- A CSV file ------------------------------------------------------------------------------

const STILL_AWARDING = new Set(["upload_in_progress", "request_in_progress"]);

const TEMPLATE_DETAIL = { health_checkup: "checkup_type", volunteering: "event_id" };

// The sample file for a program's module, as a data: URL (UTF-8 with a byte order mark, so
// Excel opens it as UTF-8).
function templateUrl(module) {
  const detail = TEMPLATE_DETAIL[module];
  const example = { health_checkup: "特定健康診査", volunteering: "evt_..." }[module];
  const today = tokyoToday();
  const header = ["address_number", "record_id", "occurred_on", detail].filter(Boolean).join(",");
  const rows = [1, 2].map((n) => [`12345678${n}0`, `REC-${today.slice(0, 4)}-00${n}`, today, detail && example].filter(Boolean).join(","));
  return `data:text/csv;charset=utf-8,${encodeURIComponent(`\ufeff${[header, ...rows].join("\r\n")}\r\n`)}`;
}

export function uploadScreen(detail) {
  const state = { programs: null, programId: detail || "", file: null, bytes: null, check: null, busy: false, key: null, error: null, fileProblems: null };
  let screen = null;
  state.refresh = () => redraw(screen);
  const path = () => `${ISSUER}/programs/${encodeURIComponent(state.programId)}`;
  const actions = {
    choose(id) {
      go(`#/upload/${encodeURIComponent(id)}`);
    },
    async pick(event) {
      const file = event.target.files && event.target.files[0];
      state.check = null;
      state.error = null;
      state.fileProblems = null;
      state.key = null;
      state.file = file ? file.name : null;
      state.bytes = file ? await file.arrayBuffer() : null;
      redraw(screen);
    },
    async check() {
      if (state.busy) return;
      if (!state.bytes) {
        state.error = w().fileMissing;
        return redraw(screen);
      }
      state.check = null;
      return act(state, async () => {
        state.check = await postCsv(`${path()}/award-uploads/check`, state.bytes);
        state.key = null;
      });
    },
    async award() {
      if (state.busy || !state.check || !state.check.ok) return;
      state.key = state.key || newKey();
      let upload = null;
      const sent = await act(state, async () => {
        const query = new URLSearchParams({ filename: (state.file || "").slice(0, 200) });
        upload = await postCsv(`${path()}/award-uploads?${query}`, state.bytes, state.key);
        state.key = null;
      }, (failure) => {
        // A file still being awarded keeps its key: awarding it again later resumes it.
        if (failure instanceof Refused && !STILL_AWARDING.has(failure.problem.code)) state.key = null;
        if (failure instanceof Refused && Array.isArray(failure.problem.errors)) state.fileProblems = failure.problem.errors;
      });
      if (sent) go(`#/uploads/${encodeURIComponent(upload.id)}`);
    },
  };
  screen = desk("department-upload", () => drawUpload(state, actions), "upload");
  load(state, async () => {
    state.programs = (await loadPrograms()).filter((item) => item.status === "active");
  });
}

const COLUMNS = ["address_number", "resident_id", "record_id", "occurred_on", "amount", "checkup_type", "event_id"];

// The API says why a line is bad in English; the usual reasons in Japanese on a Japanese screen
// (anything else as the API says it).
const REASONS_JA = [
  [/^no resident has address number (\S+)/, (m) => `宛名番号 ${m[1]} の住民はいません。`],
  [/^more than one resident has address number (\S+)/, (m) => `宛名番号 ${m[1]} の住民が2人以上います。住民記録の担当へ確認してください。`],
  [/^the same record_id is on line (\d+)/, (m) => `同じ記録番号が${m[1]}行目にもあります。`],
  [/^not a date \(YYYY-MM-DD\): '(.*)'$/, (m) => `日付ではありません（2026-05-12 の形で）：${m[1]}`],
  [/^not a positive integer: '(.*)'$/, (m) => `1以上の整数ではありません：${m[1]}`],
  [/^this program awards (\d+) per event/, (m) => `この事業の1回の付与は ${Number(m[1]).toLocaleString("en-US")} pt です。`],
  [/^give resident_id or address_number, not both/, () => "住民IDと宛名番号のどちらか一方だけを入れてください。"],
  [/^give resident_id or address_number$/, () => "宛名番号（または住民ID）を入れてください。"],
  [/^not an address number \(1 to 20 digits\): '(.*)'$/, (m) => `宛名番号ではありません（半角数字20桁まで）：${m[1]}`],
  [/^not a resident id: '(.*)'$/, (m) => `住民IDではありません：${m[1]}`],
  [/^missing column '(\w+)' or '(\w+)'/, (m) => `列「${m[1]}」または「${m[2]}」がありません。`],
  [/^missing column '(\w+)'/, (m) => `列「${m[1]}」がありません。`],
  [/^unknown column '(\w+)'/, (m) => `使えない列「${m[1]}」があります。`],
  [/^column '(\w+)' appears twice/, (m) => `列「${m[1]}」が2回あります。`],
  [/^the file has no header row/, () => "1行目に列名がありません。"],
  [/^the file is empty/, () => "ファイルが空です。"],
  [/^(\d+) fields where the header has (\d+)/, (m) => `項目が${m[1]}個あります（列名は${m[2]}個）。`],
  [/^the CSV is broken here/, () => "CSVの形が崩れています（引用符 \" の閉じ忘れなど）。"],
  [/record_id_reused/, () => "この記録番号は別の住民または別の内容で付与済みです。"],
  [/^a file holds at most (\d+) rows/, (m) => `1つのファイルは${Number(m[1]).toLocaleString("en-US")}行までです。`],
];

export function reasonOf(reason) {
  if (lang() !== "ja") return reason;
  for (const [pattern, say] of REASONS_JA) {
    const match = pattern.exec(reason || "");
    if (match) return say(match);
  }
  return reason;
}

function columnWord(column) {
  return COLUMNS.includes(column) ? `${w().columns[column]} (${column})` : column || "—";
}

function problemsTable(id, problems) {
  return table(
    id,
    [
      { label: w().line, value: (row) => w().lineNo(row.line), numeric: true },
      { label: w().column, value: (row) => columnWord(row.column) },
      { label: w().reason, value: (row) => reasonOf(row.reason) },
    ],
    problems,
  );
}

function drawUpload(state, actions) {
  const { early, chosen, head, chooser } = programTop(state, "upload-program", w().uploadTitle, w().uploadIntro, actions.choose);
  if (early) return early;
  const check = state.check;
  const total = check ? Object.values(check.totals).reduce((sum, value) => sum + value, 0) : 0;
  return [
    ...head,
    chooser,
    h("h2", {}, w().fileFormat),
    h("p", {}, w().formatText(TEMPLATE_DETAIL[chosen.module])),
    h("p", {}, h("a", { id: "template", class: "button link secondary", href: templateUrl(chosen.module), download: `awards-${chosen.id}.csv` }, w().template)),
    h(
      "div",
      { class: "row" },
      field("csv-file", w().chooseFile, h("input", { id: "csv-file", type: "file", accept: ".csv,text/csv", onchange: actions.pick }), state.file ? w().chosenFile(state.file) : w().fileHint),
      h("button", { id: "check-file", type: "button", class: "button secondary", disabled: state.busy || !state.bytes, onclick: actions.check }, state.busy && !check ? w().checking : w().checkFile),
    ),
    errorLine(state.error),
    state.fileProblems && [h("h2", {}, w().problemsTitle), problemsTable("upload-problems", state.fileProblems)],
    check && !check.ok && [
      h("h2", { id: "check-bad" }, w().checkBad(check.errors.length)),
      h("p", { id: "nothing-awarded", class: "warning" }, w().nothingAwarded),
      problemsTable("check-problems", check.errors),
    ],
    check && check.ok && [
      h("h2", { id: "check-good" }, w().checkGood),
      sums("check-sums", [
        [w().rows, w().rowsN(check.rows)],
        [w().toAward, w().rowsN(check.to_award)],
        [w().replays, w().rowsN(check.replays)],
        ...Object.entries(check.totals).map(([year, amount]) => [w().neededIn(Number(year)), money(amount)]),
      ]),
      check.to_award > 0
        ? [
            h("p", { class: "warning" }, w().cannotUndo),
            h("button", { id: "award-file", type: "button", class: "button primary", disabled: state.busy, onclick: actions.award }, state.busy ? w().sending : w().awardRows(check.to_award, money(total))),
          ]
        : h("p", { id: "nothing-new" }, w().nothingNew),
    ],
  ];
}

// --- An upload's outcome ---------------------------------------------------------------------

export function uploadResultScreen(detail) {
  const state = { upload: null, program: null, budget: null, error: null, reason: "", cancelling: false, busy: false, key: null };
  let screen = null;
  state.refresh = () => redraw(screen);
  const load = async () => {
    try {
      state.upload = await get(`${ISSUER}/award-uploads/${encodeURIComponent(detail)}`);
      const path = `${ISSUER}/programs/${encodeURIComponent(state.upload.program_id)}`;
      state.program = await get(path).catch(() => null);
      state.budget = await get(`${path}/budgets/${thisFiscalYear()}`).catch(() => null);
    } catch (failure) {
      state.error = why(failure);
    }
    redraw(screen);
  };
  const actions = {
    load,
    askCancel() {
      state.cancelling = true;
      redraw(screen);
    },
    cancel() {
      return actFor(state, state.reason, async (reason) => {
        state.key = state.key || newKey();
        state.upload = await post(`${ISSUER}/award-uploads/${encodeURIComponent(detail)}/cancel`, { reason }, state.key);
        state.key = null;
        state.cancelling = false;
      }, (failure) => {
        if (failure instanceof Refused) state.key = null;
      });
    },
  };
  screen = desk("department-upload-result", () => drawResult(state, actions), "upload");
  load();
}

function drawResult(state, actions) {
  const upload = state.upload;
  if (!upload) return [h("h1", {}, w().resultTitle), errorLine(state.error), link("back-upload", w().uploadMenu, "#/upload")];
  return [
    h("h1", {}, w().resultTitle),
    h("p", { id: "upload-status", class: "staff-line", role: "status" }, w().uploadStatus[upload.status] || upload.status),
    sums("upload-sums", [
      [w().program, state.program ? nameOf(state.program) : upload.program_id],
      [w().fileName, upload.filename || "—"],
      [w().rows, w().rowsN(upload.rows)],
      [w().awardedRows, h("span", { id: "upload-awarded" }, w().rowsN(upload.awarded))],
      [w().replayedRows, w().rowsN(upload.replayed)],
      [w().failedRows, h("span", { id: "upload-failed" }, w().rowsN(upload.failed))],
      [w().setAside, money(upload.total)],
      [w().returned, money(upload.returned)],
      [w().startedAt, moment(upload.created_at)],
      [w().finishedAt, upload.finished_at ? moment(upload.finished_at) : "—"],
    ]),
    upload.failures.length > 0 && [
      h("h2", {}, w().failuresTitle),
      table(
        "upload-failures",
        [
          { label: w().line, value: (row) => w().lineNo(row.line), numeric: true },
          { label: w().reason, value: (row) => (w().problems[row.code] ? w().problems[row.code] : reasonOf(row.reason)) },
        ],
        upload.failures,
      ),
    ],
    state.budget && [h("h2", {}, w().budgetNow(state.budget.fiscal_year)), budgetSums("budget-after", state.budget)],
    errorLine(state.error),
    upload.status === "issuing" && [
      h("p", {}, w().stoppedText),
      state.cancelling
        ? h(
            "div",
            { class: "row" },
            field("cancel-reason", w().reasonLabel, input("cancel-reason", state.reason, (v) => (state.reason = v), { maxlength: "200" })),
            h("button", { id: "cancel-confirm", type: "button", class: "button danger", disabled: state.busy, onclick: actions.cancel }, w().cancelUpload),
          )
        : button("cancel-upload", w().cancelUploadAsk, actions.askCancel, "secondary"),
    ],
    h(
      "div",
      { class: "row" },
      button("reload-upload", w().reload, actions.load, "secondary"),
      link("back-upload", w().uploadAnother, `#/upload/${encodeURIComponent(upload.program_id)}`),
      link("result-program", w().programPage, `#/program/${encodeURIComponent(upload.program_id)}`),
    ),
  ];
}
