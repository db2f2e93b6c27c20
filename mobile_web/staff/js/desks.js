// Which screens an office PC shows: the module of the session's role (docs/staff-desks.md),
// imported when a PC of that role first needs it, so that a till (or a counter PC) never loads
// the other roles' screens.
import { drawMenu, setCurrent, setMenu } from "./desk.js";

const DESKS = {
  counter: () => import("./counter.js"),
  issuer: () => import("./department.js"),
  finance: () => import("./finance.js"),
  admin: () => import("./admin.js"),
};

export function isDesk(role) {
  return Object.hasOwn(DESKS, role);
}

// The role's module: { menu, routes }.
export function loadDesk(role) {
  return DESKS[role]();
}

// Show the route `name` of the role's desk (its home when unknown).
export function deskRoute(desk, session, name, detail) {
  setMenu(desk.menu);
  const screen = desk.routes[name] || desk.routes.home;
  return screen(detail, session);
}

// The role's menu around a screen of the staff app's own (settings), marked current.
export function markCurrent(desk, route) {
  setCurrent(route);
  setMenu(desk.menu);
}

// Not a desk (a till, signed out): no menu.
export function noDesk() {
  setMenu(null);
}

export { drawMenu };
