// The checks of the catalog item form (serving/routes/content.py ItemIn) and the body it sends.
import type { Errors } from "../forms";
import { parseNumber, splitList } from "../forms";
import type { ContentItem } from "../../api/extra";

export interface ItemValues {
  item_id: string;
  title: string;
  categories: string;
  tags: string;
  brand: string;
  price: string;
  currency: string;
  stock: string;
  available: boolean;
  text: string;
  url: string;
  image_url: string;
}

export const EMPTY_ITEM: ItemValues = {
  item_id: "", title: "", categories: "", tags: "", brand: "", price: "", currency: "USD", stock: "",
  available: true, text: "", url: "", image_url: "",
};

export function valuesOf(item: ContentItem): ItemValues {
  return {
    item_id: item.item_id, title: item.title ?? "", categories: (item.categories ?? []).join(", "),
    tags: (item.tags ?? []).join(", "), brand: item.brand ?? "", price: item.price == null ? "" : String(item.price),
    currency: item.currency ?? "USD", stock: item.stock == null ? "" : String(item.stock), available: item.available ?? true,
    text: item.text ?? "", url: item.url ?? "", image_url: item.image_url ?? "",
  };
}

export function itemBody(v: ItemValues): { body: Record<string, unknown>; errors: Errors } {
  const errors: Errors = {};
  if (!v.item_id.trim() || v.item_id.trim().length > 256) errors.item_id = "1-256 characters";
  if (!v.title.trim()) errors.title = "a title";
  const body: Record<string, unknown> = {
    title: v.title.trim(), categories: splitList(v.categories), tags: splitList(v.tags), available: v.available,
  };
  if ((body.categories as string[]).length > 50) errors.categories = "at most 50";
  if ((body.tags as string[]).length > 200) errors.tags = "at most 200";
  if (v.brand.trim()) body.brand = v.brand.trim();
  const price = parseNumber(v.price);
  if (price !== undefined) {
    if (!(price >= 0 && price <= 1e9)) errors.price = "a number in [0, 1e9]";
    body.price = price;
  }
  if (!/^[A-Za-z]{3}$/.test(v.currency.trim())) errors.currency = "a 3-letter code, e.g. EUR";
  body.currency = v.currency.trim().toUpperCase();
  const stock = parseNumber(v.stock);
  if (stock !== undefined) {
    if (!(Number.isInteger(stock) && stock >= 0)) errors.stock = "a whole number >= 0";
    body.stock = stock;
  }
  for (const k of ["text", "url", "image_url"] as const) if (v[k].trim()) body[k] = v[k].trim();
  return { body, errors };
}
