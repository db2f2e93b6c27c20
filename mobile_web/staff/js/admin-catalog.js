// The admin PC's goods catalog: what the city counters exchange for points, with the stock (add,
// change the price or the limit, retire, stock changes with their reason, and a picture for the
// wallet's exchange screen).
import { Refused, Unreachable, call, get, post } from "../../app/js/api.js";
import { errorLine, h } from "../../app/js/dom.js";
import { money } from "../../app/js/i18n.js";
import { field, table } from "./desk.js";
import { act, ask, choose, confirmBox, everything, input, load, nameOf, press, screenOf, statusWord, w } from "./admin-kit.js";

const ADMIN = "/api/v1/admin";

function numberOr(text) {
  const value = String(text ?? "").trim().replace(/[,，]/g, "");
  return /^-?[0-9]+$/.test(value) ? Number(value) : -1e18;
}

//: The largest picture the API takes (redemption/catalog.py IMAGE_MAX_BYTES).
const PICTURE_MAX = 256 * 1024;

// The picture's own bytes as the body (the API reads PNG or JPEG from the bytes, not the type).
async function putPicture(id, file) {
  const bytes = await file.arrayBuffer();
  let response;
  try {
    response = await fetch(`${ADMIN}/catalog-items/${encodeURIComponent(id)}/image`, {
      method: "PUT",
      headers: { Accept: "application/json", "X-Points-Client": "staff", "Content-Type": file.type || "application/octet-stream" },
      body: bytes,
      credentials: "same-origin",
      cache: "no-store",
    });
  } catch (error) {
    throw new Unreachable(error);
  }
  const data = await response.json().catch((error) => {
    throw new Unreachable(error);
  });
  if (!response.ok) throw new Refused({ status: response.status, ...data });
  return data;
}

export function catalogScreen() {
  const s = screenOf("admin-catalog", "catalog", draw, { busy: true, items: null, counters: [], types: [], pictureFile: null });
  load(s, async () => {
    const [items, merchants, types] = await Promise.all([
      get(`${ADMIN}/catalog-items`),
      everything(get, `${ADMIN}/merchants`),
      get(`${ADMIN}/point-types`),
    ]);
    s.items = items;
    s.counters = merchants.filter((m) => m.kind === "counter");
    s.types = types;
  });
}

function draw(s) {
  const f = s.form;
  const items = s.items || [];
  const counter = (id) => nameOf(s.counters.find((m) => m.id === id));
  const replace = (changed) => {
    s.items = items.map((one) => (one.id === changed.id ? changed : one));
  };
  const add = () =>
    act(s, async () => {
      const body = {
        merchant_id: f.itemCounter || s.counters[0]?.id || "",
        point_type: f.itemType || s.types[0]?.code || "",
        name_ja: (f.itemNameJa || "").trim(),
        name_en: (f.itemNameEn || "").trim(),
        points: numberOr(f.itemPoints),
        stock: numberOr(f.itemStock),
      };
      if (String(f.itemLimit || "").trim()) body.per_resident_limit = numberOr(f.itemLimit);
      const made = await post(`${ADMIN}/catalog-items`, body);
      s.items = [...items, made];
      for (const key of ["itemNameJa", "itemNameEn", "itemPoints", "itemStock", "itemLimit"]) f[key] = "";
      s.done = w().itemAdded(nameOf(made));
    });
  const price = () =>
    act(s, async () => {
      const id = f.priceItem || items[0]?.id;
      const changed = await call("PATCH", `${ADMIN}/catalog-items/${encodeURIComponent(id)}`, {
        body: { points: numberOr(f.pricePoints) },
      });
      replace(changed);
      f.pricePoints = "";
      s.done = w().itemChanged(nameOf(changed));
    });
  const stock = () =>
    act(s, async () => {
      const id = f.stockItem || items[0]?.id;
      const changed = await post(`${ADMIN}/catalog-items/${encodeURIComponent(id)}/stock-changes`, {
        delta: numberOr(f.stockDelta),
        reason: (f.stockReason || "").trim(),
      });
      replace(changed);
      f.stockDelta = "";
      f.stockReason = "";
      s.done = w().stockChanged(nameOf(changed), changed.stock);
    });
  const retire = (item) =>
    ask(s, w().retireAsk(nameOf(item)), w().retire, async () => {
      replace(await call("PATCH", `${ADMIN}/catalog-items/${encodeURIComponent(item.id)}`, { body: { status: "retired" } }));
      s.done = w().itemRetired(nameOf(item));
    }, w().retireDetail, true);
  const picture = () => {
    const file = s.pictureFile;
    if (!file) {
      s.error = w().pictureMissing;
      s.done = null;
      s.refresh();
      return Promise.resolve(false);
    }
    if (file.size > PICTURE_MAX) {
      s.error = w().pictureTooLarge(Math.ceil(file.size / 1024));
      s.done = null;
      s.refresh();
      return Promise.resolve(false);
    }
    return act(s, async () => {
      const changed = await putPicture(f.pictureItem || items[0]?.id, file);
      // The same address again: the browser's copy is of the old picture.
      changed.image_url = changed.image_url && `${changed.image_url}?v=${Date.now()}`;
      replace(changed);
      s.pictureFile = null;
      s.done = w().pictureSaved(nameOf(changed));
    }, () => {
      // Refused or not answered: choose the file again (the form is drawn anew).
      s.pictureFile = null;
    });
  };
  const itemOptions = items.filter((i) => i.status === "active").map((i) => [i.id, nameOf(i)]);
  return [
    h("h1", {}, w().catalogTitle),
    h("p", { class: "lead" }, w().catalogLead),
    errorLine(s.error),
    s.done && h("p", { id: "done", class: "done-line", role: "status" }, s.done),
    confirmBox(s),
    s.items === null
      ? h("p", { class: "quiet" }, w().loading)
      : table(
          "catalog",
          [
            {
              label: w().name,
              value: (i) => [
                i.image_url
                  ? h("img", { class: "item-thumb", src: i.image_url, alt: w().pictureOf(nameOf(i)), width: "64", height: "48", "data-item": i.id })
                  : h("span", { class: "block quiet" }, w().pictureNone),
                h("span", { class: "block" }, nameOf(i)),
              ],
            },
            { label: w().counterOf, value: (i) => counter(i.merchant_id) },
            { label: w().price, value: (i) => money(i.points), numeric: true },
            { label: w().stock, value: (i) => w().pieces(i.stock), numeric: true },
            { label: w().perResident, value: (i) => (i.per_resident_limit ? w().pieces(i.per_resident_limit) : w().none), numeric: true },
            { label: w().status, value: (i) => statusWord(i.status) },
            {
              label: w().actions,
              value: (i) =>
                i.status === "active"
                  ? press(s, `retire-${i.id}`, w().retire, () => retire(i), "danger", { "aria-label": w().retireFor(nameOf(i)) })
                  : "",
            },
          ],
          items,
          { empty: w().catalogEmpty },
        ),
    itemOptions.length > 0 && [
      h("h2", { id: "stock-title" }, w().stockChange),
      h("p", { class: "hint" }, w().stockHint),
      h(
        "form",
        { id: "stock-form", class: "row", "aria-labelledby": "stock-title", onsubmit: (event) => event.preventDefault() },
        choose(s, "stock-item", w().item, "stockItem", itemOptions),
        input(s, "stock-delta", w().stockDelta, "stockDelta", { inputmode: "numeric" }),
        input(s, "stock-reason", w().reason, "stockReason"),
        press(s, "stock-save", w().save, stock),
      ),
      h("h2", { id: "picture-title" }, w().pictureChange),
      h("p", { class: "hint" }, w().pictureHint),
      h(
        "form",
        { id: "picture-form", class: "row", "aria-labelledby": "picture-title", onsubmit: (event) => event.preventDefault() },
        choose(s, "picture-item", w().item, "pictureItem", itemOptions),
        field(
          "picture-file",
          w().pictureFile,
          h("input", {
            id: "picture-file",
            type: "file",
            accept: "image/png,image/jpeg",
            onchange: (event) => {
              s.pictureFile = event.target.files[0] || null;
              s.refresh();
            },
          }),
          s.pictureFile ? w().pictureChosen(s.pictureFile.name) : w().pictureFileHint,
        ),
        press(s, "picture-save", w().pictureUpload, picture),
      ),
      h("h2", { id: "price-title" }, w().priceChange),
      h(
        "form",
        { id: "price-form", class: "row", "aria-labelledby": "price-title", onsubmit: (event) => event.preventDefault() },
        choose(s, "price-item", w().item, "priceItem", itemOptions),
        input(s, "price-points", w().price, "pricePoints", { inputmode: "numeric" }),
        press(s, "price-save", w().save, price),
      ),
    ],
    h("h2", { id: "item-new-title" }, w().itemNew),
    s.counters.length === 0 && s.items !== null
      ? h("p", { id: "no-counter", class: "quiet" }, w().noCounter)
      : h(
          "form",
          { id: "item-form", class: "row", "aria-labelledby": "item-new-title", onsubmit: (event) => event.preventDefault() },
          input(s, "item-name-ja", w().nameJa, "itemNameJa"),
          input(s, "item-name-en", w().nameEn, "itemNameEn"),
          choose(s, "item-counter", w().counterOf, "itemCounter", s.counters.map((m) => [m.id, nameOf(m)])),
          choose(s, "item-type", w().pointType, "itemType", s.types.map((t) => [t.code, nameOf(t)])),
          input(s, "item-points", w().price, "itemPoints", { inputmode: "numeric" }),
          input(s, "item-stock", w().stock, "itemStock", { inputmode: "numeric" }),
          input(s, "item-limit", w().perResident, "itemLimit", { inputmode: "numeric" }, w().perResidentHint),
          press(s, "item-add", w().add, add),
        ),
  ];
}
