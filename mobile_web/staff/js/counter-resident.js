// The resident at the counter: details, wallets and the coming expiry, cards; the phone (an
// enrolment code slip to print, a lost phone's tokens revoked, a self-enrolled resident marked
// verified), the card (issued with the PIN the resident types, blocked, reissued, unlocked,
// its PIN changed, printed, put in the cards to print) and the expiry notice page; a wallet closed
// when the resident moved out or died (its balance expires: the form says how much) and the
// details corrected (counter-correct.js). Every act that cannot be undone asks first (its form is
// the question: what, why, and a button that says what it does).
import { Refused, newKey, post } from "../../app/js/api.js";
import { button, errorLine, h, onScreen, redraw, svgOf } from "../../app/js/dom.js";
import { money, moment } from "../../app/js/i18n.js";
import { go } from "./common.js";
import { desk, field, sentenceOf, sums, table } from "./desk.js";
import { trayButton } from "./counter-tray.js";
import {
  act,
  activeCard,
  doneLine,
  expiryText,
  loadResident,
  nameOf,
  pinField,
  pinProblem,
  reasonField,
  refuse,
  state,
  svgText,
  takeDone,
  typeName,
  valueOf,
  w,
} from "./counter-kit.js";

const path = (id) => `/api/v1/counter/residents/${encodeURIComponent(id)}`;
const cardPath = (id) => `/api/v1/counter/cards/${encodeURIComponent(id)}`;

export function residentScreen(residentId) {
  let done = takeDone();
  let known = null;
  let failed = null;
  let open = null;
  let screen = null;

  const reload = async () => {
    try {
      known = await loadResident(residentId);
      failed = null;
    } catch (failure) {
      failed = sentenceOf(w, failure);
    }
    redraw(screen);
  };

  const toggle = (name) => () => {
    open = open === name ? null : name;
    done = null;
    redraw(screen);
    const first = document.querySelector(`#${name}-form input`);
    if (first) first.focus();
  };

  // After an act: say what was done, read the resident again.
  const after = (said) => {
    open = null;
    done = said;
    return reload();
  };

  const issueCode = async () => {
    const code = await act("issue-code", () => post(`${path(residentId)}/enrolment-codes`, {}));
    if (!code) return;
    state.code = code;
    go(`#/code/${encodeURIComponent(residentId)}`);
  };

  const submit = (name, work) => async (event) => {
    event.preventDefault();
    await work();
  };

  const revoke = submit("revoke", async () => {
    const reason = valueOf("revoke-reason");
    if (!reason) return refuse(w().reasonMissing);
    const revoked = await act("revoke-go", () => post(`${path(residentId)}/revoke-tokens`, { reason }));
    if (!revoked) return undefined;
    const code = await act("revoke-go", () => post(`${path(residentId)}/enrolment-codes`, {}));
    if (!code) return after(() => w().revoked(revoked.revoked));
    state.code = code;
    state.done = () => w().revoked(revoked.revoked);
    return go(`#/code/${encodeURIComponent(residentId)}`);
  });

  const verify = submit("verify", async () => {
    const reason = valueOf("verify-reason");
    if (!reason) return refuse(w().reasonMissing);
    const made = await act("verify-go", () => post(`${path(residentId)}/verify`, { reason }));
    return made && after(() => w().verified);
  });

  const issue = submit("issue", async () => {
    const problem = pinProblem(valueOf("issue-pin"), valueOf("issue-pin2"));
    if (problem) return refuse(problem);
    const card = await act("issue-go", () => post(`${path(residentId)}/cards`, { pin: valueOf("issue-pin") }));
    if (!card) return undefined;
    state.done = () => w().cardIssued;
    return go(`#/card/${encodeURIComponent(residentId)}/${encodeURIComponent(card.id)}`);
  });

  const cardAct = (name, route, body, said) =>
    submit(name, async () => {
      const card = activeCard(known) || lastCard(known);
      const reason = valueOf(`${name}-reason`);
      if (!reason) return refuse(w().reasonMissing);
      const sent = body(reason);
      if (!sent) return undefined;
      const answer = await act(`${name}-go`, () => post(`${cardPath(card.id)}/${route}`, sent));
      if (!answer) return undefined;
      if (name === "reissue") {
        state.done = () => w().reissued;
        return go(`#/card/${encodeURIComponent(residentId)}/${encodeURIComponent(answer.id)}`);
      }
      return after(said);
    });

  // A closed wallet opened again (the resident came back): value-moving route, one key per act
  // kept until a definite answer.
  let reopenKey = null;
  const reopen = submit("reopen", async () => {
    const reason = valueOf("reopen-reason");
    if (!reason) return refuse(w().reasonMissing);
    const wallet = (known.wallets || []).find((row) => row.status === "closed");
    if (!wallet) return undefined;
    reopenKey = reopenKey || newKey();
    const url = `${path(residentId)}/wallets/${encodeURIComponent(wallet.point_type)}/reopen`;
    const answer = await act("reopen-go", async () => {
      try {
        return await post(url, { reason }, reopenKey);
      } catch (failure) {
        if (failure instanceof Refused) reopenKey = null;
        throw failure;
      }
    });
    if (!answer) return undefined;
    reopenKey = null;
    return after(() => w().reopened);
  });

  // A wallet closed (moved out, deceased): its balance goes to expired points. One key per act,
  // kept for a retry after no answer, dropped after a refusal or a change of wallet.
  let closeKey = null;
  let closing = null;
  const openWallets = () => (known.wallets || []).filter((row) => row.status === "open");
  const closingWallet = () => openWallets().find((row) => row.point_type === closing) || openWallets()[0];
  const chooseClosing = (event) => {
    closing = event.target.value;
    closeKey = null;
    const reason = valueOf("close-reason");
    redraw(screen);
    const again = document.getElementById("close-reason");
    if (again) again.value = reason;
    document.getElementById("close-wallet")?.focus();
  };
  const close = submit("close", async () => {
    const reason = valueOf("close-reason");
    if (!reason) return refuse(w().reasonMissing);
    const wallet = closingWallet();
    if (!wallet) return undefined;
    if (closeKey && closeKey.point_type !== wallet.point_type) closeKey = null;
    closeKey = closeKey || { point_type: wallet.point_type, key: newKey() };
    const url = `${path(residentId)}/wallets/${encodeURIComponent(wallet.point_type)}/close`;
    const answer = await act("close-go", async () => {
      try {
        return await post(url, { reason }, closeKey.key);
      } catch (failure) {
        if (failure instanceof Refused) closeKey = null;
        throw failure;
      }
    });
    if (!answer) return undefined;
    closeKey = null;
    closing = null;
    return after(() => w().closed(money(answer.moved_to_expired)));
  });

  // What closing the chosen wallet loses, and the wallet chosen when there are several.
  const closeFields = () => {
    const wallets = openWallets();
    const wallet = closingWallet();
    if (!wallet) return [];
    return [
      wallets.length > 1 &&
        field(
          "close-wallet",
          w().closeWallet,
          h(
            "select",
            { id: "close-wallet", onchange: chooseClosing },
            wallets.map((row) =>
              h("option", { value: row.point_type, selected: row.point_type === wallet.point_type }, `${typeName(row)}（${money(row.balance)}）`),
            ),
          ),
        ),
      h(
        "p",
        { id: "close-loss", class: wallet.balance > 0 ? "warning" : null },
        wallet.balance > 0 ? w().closeLoss(money(wallet.balance)) : w().closeNothing,
      ),
      reasonField("close-reason", w().closeHint),
    ];
  };

  const block = cardAct("block", "block", (reason) => ({ reason }), () => w().blocked);
  const unlock = cardAct("unlock", "unlock", (reason) => ({ reason }), () => w().unlocked);
  const pin = cardAct(
    "pin",
    "pin",
    (reason) => {
      const problem = pinProblem(valueOf("pin-new"), valueOf("pin-new2"));
      if (problem) return refuse(problem);
      return { new_pin: valueOf("pin-new"), reason };
    },
    () => w().pinChanged,
  );
  const reissue = cardAct(
    "reissue",
    "reissue",
    (reason) => {
      const typed = valueOf("reissue-pin");
      if (!typed && !valueOf("reissue-pin2")) return { reason };
      const problem = pinProblem(typed, valueOf("reissue-pin2"));
      if (problem) return refuse(problem);
      return { reason, pin: typed };
    },
    () => w().reissued,
  );

  const form = (name, title, lead, fields, go_, onsubmit, kind = "primary") =>
    open === name &&
    h(
      "form",
      { id: `${name}-form`, class: "act-form", onsubmit, novalidate: true },
      h("h3", {}, title),
      lead && h("p", { class: kind === "danger" ? "warning" : null }, lead),
      fields,
      // The screen's one error line sits in the open form, next to what it is about.
      errorLine(null),
      h(
        "div",
        { class: "row" },
        h("button", { id: `${name}-go`, type: "submit", class: `button ${kind}` }, go_),
        button(`${name}-cancel`, w().cancel, toggle(name), "secondary"),
      ),
    );

  const draw = () => {
    if (failed && !known) {
      return [h("h1", {}, w().residentTitle), errorLine(failed), h("a", { id: "back-home", href: "#/home", class: "button link" }, w().backHome)];
    }
    if (!known) return [h("h1", {}, w().residentTitle), h("p", { class: "quiet", role: "status" }, w().loading)];
    const { resident, wallets } = known;
    const cards = known.cards || [];
    const active = activeCard(known);
    const last = lastCard(known);
    const verified = resident.verification === "verified";
    return [
      h("h1", { id: "resident-name" }, nameOf(resident)),
      doneLine(done),
      !open && errorLine(failed),
      sums("resident-details", [
        [w().addressNumber, resident.address_number || "—"],
        [w().birthYearShort, resident.birth_year ? w().yearOf(resident.birth_year) : "—"],
        [w().verification, verified ? w().isVerified : w().selfEnrolled],
        [w().status, w().residentStatus[resident.status] || resident.status],
        [w().since, moment(resident.created_at)],
      ]),
      resident.name &&
        h("div", { class: "row" }, h("a", { id: "go-correct", href: `#/correct/${encodeURIComponent(residentId)}`, class: "button link secondary" }, w().correctOpen)),
      h("h2", {}, w().points),
      table(
        "wallets",
        [
          { label: w().pointType, value: typeName },
          { label: w().balance, value: (row) => money(row.balance), numeric: true },
          { label: w().held, value: (row) => money(row.held), numeric: true },
          { label: w().expiringSoon, value: expiryText },
          { label: w().walletState, value: (row) => w().walletStatus[row.status] || row.status },
        ],
        wallets,
        { empty: w().noWallets },
      ),
      wallets.some((row) => row.status === "closed") &&
        h("div", { class: "row" }, button("open-reopen", w().reopenOpen, toggle("reopen"), "secondary")),
      form("reopen", w().reopenTitle, w().reopenLead, reasonField("reopen-reason", w().reopenHint), w().reopenGo, reopen),
      wallets.some((row) => row.status === "open") &&
        h("div", { class: "row" }, button("open-close", w().closeOpen, toggle("close"), "secondary")),
      open === "close" &&
        form("close", w().closeTitle, w().closeLead, closeFields(), w().closeGo(money(closingWallet()?.balance || 0)), close, "danger"),
      h(
        "p",
        {},
        h(
          "a",
          { id: "go-notice", href: `${path(residentId)}/expiry-notice`, target: "_blank", rel: "noopener", class: "button link secondary" },
          w().printNotice,
        ),
      ),
      h("h2", {}, w().phone),
      h("p", { class: "hint" }, verified ? w().phoneHelp : w().verifyFirst),
      h(
        "div",
        { class: "row" },
        verified && button("issue-code", w().issueCode, issueCode),
        button("open-revoke", w().lostPhone, toggle("revoke"), "secondary"),
        !verified && button("open-verify", w().verifyOpen, toggle("verify"), "secondary"),
      ),
      form("revoke", w().revokeTitle, w().revokeLead, reasonField("revoke-reason", w().revokeHint), w().revokeGo, revoke, "danger"),
      form("verify", w().verifyTitle, w().verifyLead, reasonField("verify-reason", w().identityHint), w().verifyGo, verify),
      h("h2", {}, w().cards),
      table(
        "cards",
        [
          { label: w().cardNumber, key: "number" },
          { label: w().cardState, value: cardState },
          { label: w().pinLeft, value: (row) => (row.status === "active" ? w().times(row.pin_attempts_left) : "—"), numeric: true },
          { label: w().issuedOn, value: (row) => moment(row.created_at) },
        ],
        cards,
        { empty: w().noCards },
      ),
      h(
        "div",
        { class: "row" },
        active && h("a", { id: "go-print-card", href: `#/card/${encodeURIComponent(residentId)}/${encodeURIComponent(active.id)}`, class: "button link" }, w().printCard),
        active && trayButton(active.id, residentId),
        active && active.locked && button("open-unlock", w().unlockOpen, toggle("unlock")),
        active && button("open-pin", w().pinOpen, toggle("pin"), "secondary"),
        active && button("open-block", w().blockOpen, toggle("block"), "danger"),
        !active && last && last.status === "blocked" && button("open-reissue", w().reissueOpen, toggle("reissue")),
        !active && !last && verified && button("open-issue", w().issueOpen, toggle("issue")),
        active && h("a", { id: "go-exchange", href: `#/exchange/${encodeURIComponent(residentId)}`, class: "button link secondary" }, w().exchange),
      ),
      !active && !last && !verified && h("p", { class: "hint" }, w().cardNeedsVerify),
      form(
        "issue",
        w().issueTitle,
        w().pinLead,
        [pinField("issue-pin", w().pin, w().pinHint), pinField("issue-pin2", w().pinAgain)],
        w().issueGo,
        issue,
      ),
      form("unlock", w().unlockTitle, w().unlockLead, reasonField("unlock-reason", w().identityHint), w().unlockGo, unlock),
      form(
        "pin",
        w().pinTitle,
        w().pinLead,
        [pinField("pin-new", w().newPin, w().pinHint), pinField("pin-new2", w().pinAgain), reasonField("pin-reason", w().identityHint)],
        w().pinGo,
        pin,
      ),
      form("block", w().blockTitle, w().blockLead, reasonField("block-reason", w().blockHint), w().blockGo, block, "danger"),
      form(
        "reissue",
        w().reissueTitle,
        w().reissueLead,
        [reasonField("reissue-reason", w().reissueHint), pinField("reissue-pin", w().newPinOptional, w().keepPin), pinField("reissue-pin2", w().pinAgain)],
        w().reissueGo,
        reissue,
      ),
      h("p", {}, h("a", { id: "back-home", href: "#/home", class: "button link secondary" }, w().nextResident)),
    ];
  };
  screen = desk("counter-resident", draw, "home");
  reload();
}

// The newest card (the cards come oldest first).
function lastCard(known) {
  const cards = known.cards || [];
  return cards.length ? cards[cards.length - 1] : null;
}

function cardState(card) {
  const word = w().cardStatus[card.status] || card.status;
  return card.status === "active" && card.locked ? `${word}（${w().locked}）` : word;
}

// "ABCD-EF23-45": the code in groups of four, as the wallet's enrolment screen takes it.
function grouped(code) {
  return code.length > 8 ? `${code.slice(0, 4)}-${code.slice(4, 8)}-${code.slice(8)}` : code;
}

// The enrolment code just issued, large, on a slip that prints alone.
export function codeScreen(residentId) {
  const done = takeDone();
  const code = state.code && state.code.resident_id === residentId ? state.code : null;
  desk(
    "counter-code",
    () => [
      h("h1", {}, w().codeTitle),
      doneLine(done),
      code
        ? h(
            "div",
            { id: "slip", class: "slip" },
            h("h2", {}, w().slipTitle),
            h("p", { id: "enrol-code-text", class: "slip-code", lang: "en" }, grouped(code.code)),
            h("p", { id: "code-expires", class: "slip-expires" }, w().validUntil(moment(code.expires_at))),
            h("ol", { class: "slip-steps" }, w().slipSteps.map((step) => h("li", {}, step))),
          )
        : h("p", { id: "no-code", class: "warning" }, w().noCode),
      h(
        "div",
        { class: "row" },
        code && button("print-slip", w().printSlip, () => print()),
        h("a", { id: "back-resident", href: `#/resident/${encodeURIComponent(residentId)}`, class: "button link secondary" }, w().backResident),
      ),
    ],
    "home",
  );
}

// The card as it prints (ID-1), shown in the page; the print button prints only the card.
export function cardScreen(detail) {
  const [residentId, cardId] = detail.split("/");
  const done = takeDone();
  let svg = null;
  let failed = null;
  let screen = null;
  const draw = () => [
    h("h1", {}, w().cardTitle),
    doneLine(done),
    errorLine(failed),
    h("p", { class: "hint" }, w().cardLead),
    svg
      ? h("figure", { id: "card-face", class: "card-face" }, svgOf(svg), h("figcaption", { class: "visually-hidden" }, w().cardFace))
      : !failed && h("p", { class: "quiet", role: "status" }, w().loading),
    h(
      "div",
      { class: "row" },
      svg && button("print-card", w().printThisCard, () => print()),
      svg && cardId && residentId && trayButton(cardId, residentId),
      residentId &&
        h("a", { id: "back-resident", href: `#/resident/${encodeURIComponent(residentId)}`, class: "button link secondary" }, w().backResident),
    ),
  ];
  screen = desk("counter-card", draw, "home");
  if (!cardId) {
    failed = w().noCard;
    redraw(screen);
    return;
  }
  svgText(`${cardPath(cardId)}/print`)
    .then((text) => {
      svg = text;
    })
    .catch((failure) => {
      failed = sentenceOf(w, failure);
    })
    .finally(() => {
      if (onScreen(screen)) redraw(screen);
    });
}
