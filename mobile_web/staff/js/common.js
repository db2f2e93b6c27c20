// What the staff app's screens share: the wallet's modules set up for staff (the header
// `X-Points-Client: staff`, the staff app's words), the session, going to a route, a refusal as a
// sentence (a lost session goes back to enrolment), the amount keypad, and the sound.
import { Refused, setClient } from "../../app/js/api.js";
import { h, onLeave, setError } from "../../app/js/dom.js";
import { lang, money, sentence, t, useStrings } from "../../app/js/i18n.js";
import en from "./strings-en.js";
import ja from "./strings-ja.js";

setClient("staff");
useStrings({ ja, en });

export const state = {
  // GET /api/v1/sessions/current: role, staff_id, merchant_name, till_id, till_name, …
  session: null,
  // GET /api/v1/merchant/settings (a till): the point types the shop takes.
  settings: null,
  // A sentence the enrol screen shows once (why the device is back there).
  notice: null,
  offline: false,
};

export function go(hash) {
  if (location.hash === hash) dispatchEvent(new HashChangeEvent("hashchange"));
  else location.hash = hash;
}

// Whether this browser was registered (kept so that a withdrawn registration is explained even
// after a reload): the device's label only, no secret.
const ENROLLED = "points.staff.enrolled";

export function remember(session) {
  state.session = session;
  localStorage.setItem(ENROLLED, session.label || session.role || "staff");
}

export function forget() {
  localStorage.removeItem(ENROLLED);
  state.session = null;
  state.settings = null;
}

// The session is gone (lapsed, revoked, signed out elsewhere): back to enrolment, saying why.
export function signedOut(problem) {
  const code = problem && problem.code;
  const was = state.session || localStorage.getItem(ENROLLED);
  // A second 401 (a poll or the event stream, answered after the screen's own): the enrol screen
  // already says why; drawing it again would lose the sentence.
  if (!was && code !== "session_expired" && location.hash.startsWith("#/enrol")) return;
  state.notice =
    code === "session_expired" ? t().sessionExpired : was ? t().sessionRevoked : null;
  localStorage.removeItem(ENROLLED);
  state.session = null;
  state.settings = null;
  dispatchEvent(new Event("points:signed-out"));
  go("#/enrol");
}

// The sentence for a failed request; a 401 also sends the device back to enrolment.
export function explain(failure) {
  if (failure instanceof Refused) {
    if (failure.problem.status === 401) signedOut(failure.problem);
    return refusal(failure.problem);
  }
  return t().problems.network;
}

// An API refusal as a plain sentence: the staff app's own cases with their numbers, then the
// wallet's rules (i18n.sentence: unknown token_* codes as token_malformed, else fallback).
export function refusal(problem) {
  const words = t().problems;
  if (problem) {
    const { code } = problem;
    if (code === "pin_incorrect" && Number.isInteger(problem.attempts_left)) {
      return words.pin_incorrect_with(problem.attempts_left);
    }
    if (code === "refund_exceeds_payment" && Number.isInteger(problem.refundable)) {
      return words.refund_exceeds_payment_with(money(problem.refundable));
    }
    if (code === "pin_attempts_exceeded" && Number.isInteger(problem.retry_after_seconds)) {
      return words.pin_attempts_exceeded_with(Math.max(1, Math.ceil(problem.retry_after_seconds / 60)));
    }
  }
  return sentence(problem);
}

export function showError(failure) {
  setError(explain(failure));
}

// "14:05", in Japan's time.
export function clock(instant) {
  return new Intl.DateTimeFormat("en-GB", {
    timeZone: "Asia/Tokyo",
    hour: "2-digit",
    minute: "2-digit",
    hourCycle: "h23",
  }).format(new Date(instant));
}

export function yen(amount) {
  return t().yen(Number(amount).toLocaleString("en-US"));
}

// The shop's pseudonym of the customer, short: enough to tell two customers apart.
export function shortName(customer) {
  return (customer || "").replace(/^cus_/, "").slice(0, 6);
}

// The shop's name in the language on screen (Japanese when it has no English name).
export function shopName() {
  const session = state.session;
  if (!session) return "";
  return (lang() === "en" && session.merchant_name_en) || session.merchant_name || "";
}

// --- The keypad ---------------------------------------------------------------------------------

const KEYS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "clear", "0", "back"];

// Digits keyed on screen (or on a keyboard), at most `size`. `shown(digits)` is what the output
// says; `secret` keeps the digits out of the page (a PIN: only dots).
export class Keypad {
  constructor({ size = 7, leadingZero = false, onChange = () => {} } = {}) {
    this.digits = "";
    this.size = size;
    this.leadingZero = leadingZero;
    this.onChange = onChange;
    const onKey = (event) => {
      // Only the pad on screen listens (a screen drawn over it leaves it in memory).
      if (!this.node || !this.node.isConnected) return;
      if (event.target instanceof HTMLInputElement) return;
      if (/^[0-9]$/.test(event.key)) this.press(event.key);
      else if (event.key === "Backspace") this.press("back");
    };
    document.addEventListener("keydown", onKey);
    onLeave(() => document.removeEventListener("keydown", onKey));
  }

  press(key) {
    if (key === "back") this.digits = this.digits.slice(0, -1);
    else if (key === "clear") this.digits = "";
    else if (this.digits.length < this.size && (this.leadingZero || !(this.digits === "" && key === "0"))) {
      this.digits += key;
    }
    setError(null);
    this.onChange(this.digits);
  }

  clear() {
    this.digits = "";
    this.onChange(this.digits);
  }

  get amount() {
    return Number(this.digits || 0);
  }

  element(id = "keypad") {
    this.node = h(
      "div",
      { id, class: "keypad" },
      KEYS.map((key) =>
        h(
          "button",
          {
            type: "button",
            class: "key",
            "data-key": key,
            "aria-label": key === "back" ? t().keyBack : key === "clear" ? t().keyClear : null,
            onclick: () => this.press(key),
          },
          key === "back" ? "⌫" : key === "clear" ? "C" : key,
        ),
      ),
    );
    return this.node;
  }
}

// An amount keyed on a keypad: the big output (#amount) follows the keys.
export function amountKeypad() {
  const pad = new Keypad({
    onChange: (digits) => {
      const shown = document.getElementById("amount");
      if (shown) shown.textContent = money(Number(digits || 0));
    },
  });
  return pad;
}

export function amountOutput(pad) {
  return h("output", { id: "amount", class: "big amount-shown", "aria-live": "polite" }, money(pad.amount));
}

// The point type to use: the shop's only one (null: the server takes it), or a choice.
export function typeChoice(chosen, onChoose) {
  const types = (state.settings && state.settings.accepted_point_types) || [];
  if (types.length < 2) return null;
  return h(
    "fieldset",
    {},
    h("legend", {}, t().pointType),
    types.map((code) =>
      h(
        "label",
        { class: "choice" },
        h("input", {
          type: "radio",
          name: "point-type",
          value: code,
          checked: code === chosen,
          onchange: () => onChoose(code),
        }),
        code,
      ),
    ),
  );
}

export function defaultType() {
  const types = (state.settings && state.settings.accepted_point_types) || [];
  return types.length > 1 ? types[0] : null;
}

// --- Sound --------------------------------------------------------------------------------------

// A short tone (WebAudio, no file). Browsers start audio only after the user touched the page:
// the first tap or key unlocks it. `document.documentElement.dataset.sound` names the last sound
// played (for the browser tests).
let audio = null;

function unlock() {
  try {
    audio = audio || new AudioContext();
    if (audio.state === "suspended") audio.resume();
  } catch {
    audio = null;
  }
}

addEventListener("pointerdown", unlock, { capture: true });
addEventListener("keydown", unlock, { capture: true });

const TUNES = { paid: [880, 1320], incoming: [660, 880, 660], refused: [330] };

export function beep(kind) {
  document.documentElement.dataset.sound = kind;
  if (!audio) return;
  const start = audio.currentTime;
  (TUNES[kind] || TUNES.paid).forEach((frequency, index) => {
    const oscillator = audio.createOscillator();
    const gain = audio.createGain();
    const at = start + index * 0.16;
    oscillator.frequency.value = frequency;
    gain.gain.setValueAtTime(0.0001, at);
    gain.gain.exponentialRampToValueAtTime(0.3, at + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, at + 0.14);
    oscillator.connect(gain).connect(audio.destination);
    oscillator.start(at);
    oscillator.stop(at + 0.15);
  });
}
