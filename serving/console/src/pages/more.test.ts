// The pure parts of the models, strategies and content forms, and the page list of these groups.
import { describe, expect, it } from "vitest";
import { itemBody, valuesOf, EMPTY_ITEM } from "./content/itemForm";
import { trainBody } from "./models/Models";
import { morePages } from "./more";
import { strategyBody } from "./optimization/Strategies";

describe("trainBody", () => {
  it("a job over recent history, or a window trained then evaluated", () => {
    const v = { type: "ease", lam: "250", activate: "homepage", trainDays: "", evalDays: "" };
    expect(trainBody(v)).toEqual({ body: { type: "ease", lam: 250, activate: "homepage" }, errors: {} });
    const now = 10 * 86_400_000;
    const w = trainBody({ ...v, type: "item_knn", trainDays: "7", evalDays: "1" }, now).body;
    expect(w).toMatchObject({ train_from: 2 * 86_400_000, train_to: 9 * 86_400_000, eval_to: now });
    expect(trainBody({ ...v, type: "online_mf", trainDays: "7", evalDays: "1" }).errors.train_to).toMatch(/window/);
    expect(trainBody({ ...v, lam: "0" }).errors.lam).toBeDefined();
    expect(trainBody({ ...v, trainDays: "7" }).errors.eval_to).toBeDefined();
  });
});

describe("strategyBody", () => {
  it("checks the floor and the strategies", () => {
    expect(strategyBody({ policy: "thompson", floor: "0.1", strategies: ["hybrid"] })).toEqual({
      body: { policy: "thompson", floor: 0.1, strategies: ["hybrid"] }, errors: {} });
    expect(Object.keys(strategyBody({ policy: "ucb1", floor: "0.9", strategies: [] }).errors).sort()).toEqual(["floor", "strategies"]);
  });
});

describe("itemBody", () => {
  it("round-trips a stored item and checks numbers", () => {
    const item = { item_id: "i7", title: "Shoe", categories: ["shoes"], tags: ["trail"], price: 89, currency: "EUR", stock: 3, available: false };
    const { body, errors } = itemBody(valuesOf(item));
    expect(errors).toEqual({});
    expect(body).toEqual({ title: "Shoe", categories: ["shoes"], tags: ["trail"], price: 89, currency: "EUR", stock: 3, available: false });
    const bad = itemBody({ ...EMPTY_ITEM, price: "-1", stock: "1.5", currency: "EURO" }).errors;
    expect(Object.keys(bad).sort()).toEqual(["currency", "item_id", "price", "stock", "title"]);
  });
});

describe("morePages", () => {
  it("one entry per path, in the groups these pages own", () => {
    const paths = morePages.map((p) => p.path);
    expect(new Set(paths).size).toBe(paths.length);
    expect(new Set(morePages.map((p) => p.group))).toEqual(new Set(["Optimization", "Campaigns", "Models", "Analytics", "Content"]));
  });
});
