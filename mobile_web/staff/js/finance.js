// The finance PC's screens.
import { h } from "../../app/js/dom.js";
import { desk, words } from "./desk.js";
import table from "./words-finance.js";

const w = words(table);

export const menu = [{ route: "home", label: () => w().home }];

function homeScreen() {
  desk("finance-home", () => [h("h1", {}, w().homeTitle)], "home");
}

export const routes = { home: homeScreen };
