import { describe, expect, it } from "vitest";
import { buildUrl, parseError } from "../api";
import { eventsPerSecond } from "../pages/Overview";
import { swapPriorities } from "../pages/Personalization";
import { experimentFromFields } from "../components/ExperimentForm";

describe("parseError", () => {
  it("turns a 422 list into field errors keyed by path", () => {
    const got = parseError(422, {
      detail: [
        { loc: ["body", "variants", 1, "weight"], msg: "weight must be a positive number" },
        { loc: ["query", "zz"], msg: "unknown query parameter" },
      ],
    });
    expect(got.fields).toEqual({ "variants.1.weight": "weight must be a positive number", zz: "unknown query parameter" });
    expect(got.message).toContain("variants.1.weight: weight must be a positive number");
  });
  it("keeps a string detail as the message", () => {
    expect(parseError(404, { detail: "no rule 'x'" })).toEqual({ message: "no rule 'x'", fields: {} });
    expect(parseError(502, undefined, "Bad Gateway").message).toBe("HTTP 502 Bad Gateway");
  });
});

describe("helpers", () => {
  it("builds /v1 URLs without empty parameters", () => {
    expect(buildUrl("/recommendations/trending", { category: "", limit: 5 })).toBe("/v1/recommendations/trending?limit=5");
  });
  it("events per second average the last complete minutes", () => {
    const now = 10 * 60_000 + 30_000;
    const series = [
      { start: 4 * 60_000, events: 6000 }, // older than the window
      { start: 8 * 60_000, events: 60 },
      { start: 9 * 60_000, events: 120 },
      { start: 10 * 60_000, events: 999 }, // still filling
    ];
    expect(eventsPerSecond(series, now, 2)).toBe(1.5);
    expect(eventsPerSecond(series, now)).toBe(0.6);
    expect(eventsPerSecond([], now)).toBeNull();
  });
  it("moving a rule up swaps priorities and separates ties", () => {
    expect(swapPriorities([{ id: "a", priority: 5 }, { id: "b", priority: 1 }], 1, -1)).toEqual([
      { id: "b", priority: 5 },
      { id: "a", priority: 1 },
    ]);
    expect(swapPriorities([{ id: "a", priority: 0 }, { id: "b", priority: 0 }], 1, -1)).toEqual([
      { id: "b", priority: 1 },
      { id: "a", priority: 0 },
    ]);
  });
  it("experiment fields become an A/B or multivariate definition", () => {
    const base = { kind: "ab" as const, id: "e1", name: "", variants: "control:1, green:2", factors: "", conversions: "purchase", coverage: "" };
    expect(experimentFromFields(base).doc).toEqual({
      id: "e1",
      variants: [
        { id: "control", weight: 1 },
        { id: "green", weight: 2 },
      ],
      conversion_events: ["purchase"],
    });
    expect(experimentFromFields({ ...base, variants: "only" }).errors.variants).toMatch(/two variants/);
    const mv = experimentFromFields({ ...base, kind: "multivariate", factors: "headline: A | B\nimage: cat | dog | none" });
    expect(mv.doc?.factors).toEqual({ headline: ["A", "B"], image: ["cat", "dog", "none"] });
  });
});
