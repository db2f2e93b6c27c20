// A few lines to build the screens: h("button", {id: "pay", onclick}, "支払う").
import { t } from "./i18n.js";

export function h(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "class") node.className = value;
    else if (value === true) node.setAttribute(name, "");
    else node.setAttribute(name, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

let drawn = null;
let teardowns = [];

// Leave the screen: stop its timers and camera.
export function leave() {
  for (const stop of teardowns) stop();
  teardowns = [];
}

export function onLeave(stop) {
  teardowns.push(stop);
}

// Show one screen: `draw()` returns its children (the first is its heading). The screen is drawn
// again when the language changes, so `draw` reads its state, it does not make it.
export function show(name, draw) {
  drawn = { name, draw };
  paint(true);
  return drawn;
}

// Draw the screen again; with `owner` (what `show` returned), only if it is still on screen (an
// answer that arrives after the resident left draws nothing).
export function redraw(owner) {
  if (drawn && (owner === undefined || owner === drawn)) paint(false);
}

export function onScreen(owner) {
  return drawn === owner;
}

function paint(focus) {
  const view = document.getElementById("view");
  const section = h("section", { "data-screen": drawn.name }, drawn.draw());
  view.replaceChildren(section);
  const heading = section.querySelector("h1");
  if (heading) {
    heading.tabIndex = -1;
    document.title = `${heading.textContent} | ${t().appName}`;
    if (focus) {
      // A new screen starts at the top (the bar in view), whatever was scrolled to tap.
      window.scrollTo(0, 0);
      heading.focus({ preventScroll: true });
    }
  }
}

export function screenName() {
  return drawn ? drawn.name : null;
}

// The screen's one error line (role=alert): a sentence, or nothing.
export function errorLine(text) {
  return h("p", { id: "error", role: "alert", class: text ? "error" : "error empty" }, text || "");
}

export function setError(text) {
  const line = document.getElementById("error");
  if (!line) return;
  line.textContent = text || "";
  line.className = text ? "error" : "error empty";
}

export function button(id, label, onclick, kind = "primary") {
  return h("button", { id, type: "button", class: `button ${kind}`, onclick }, label);
}

export function link(id, label, href) {
  return h("a", { id, href, class: "button link" }, label);
}

// The API's SVG of a QR code, parsed as SVG (never as HTML), sized by its container.
export function svgOf(text) {
  const parsed = new DOMParser().parseFromString(text, "image/svg+xml").documentElement;
  const svg = document.importNode(parsed, true);
  svg.removeAttribute("width");
  svg.removeAttribute("height");
  svg.setAttribute("aria-hidden", "true");
  return svg;
}
