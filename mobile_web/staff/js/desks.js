// Which screens an office PC shows: the module of the session's role (docs/staff-desks.md).
import { drawMenu, setCurrent, setMenu } from "./desk.js";
import * as admin from "./admin.js";
import * as counter from "./counter.js";
import * as department from "./department.js";
import * as finance from "./finance.js";

const DESKS = { counter, issuer: department, finance, admin };

export function isDesk(role) {
  return Object.hasOwn(DESKS, role);
}

// Show the route `name` of the role's desk (its home when unknown).
export function deskRoute(session, name, detail) {
  const module = DESKS[session.role];
  setMenu(module.menu);
  const screen = module.routes[name] || module.routes.home;
  return screen(detail, session);
}

// The role's menu around a screen of the staff app's own (settings), marked current.
export function markCurrent(session, route) {
  setCurrent(route);
  setMenu(DESKS[session.role].menu);
}

// Not a desk (a till, signed out): no menu.
export function noDesk() {
  setMenu(null);
}

export { drawMenu };
