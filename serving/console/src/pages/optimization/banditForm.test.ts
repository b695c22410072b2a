import { describe, expect, it } from "vitest";
import { EMPTY_BANDIT, allocation, appendSample, banditDoc, parseContext, sampleOf } from "./banditForm";

describe("banditDoc", () => {
  it("builds the document the API takes", () => {
    const { doc, errors } = banditDoc({ ...EMPTY_BANDIT, id: "hero", arms: "a, b,\nc", floor: "0.1", discount: "0.9" });
    expect(errors).toEqual({});
    expect(doc).toEqual({ id: "hero", policy: "thompson", arms: ["a", "b", "c"], floor: 0.1, discount: 0.9 });
  });

  it("names every bad field, like the server", () => {
    const { errors } = banditDoc({ id: "has space", policy: "ucb1", arms: "a, a", floor: "0.7", discount: "2", features: "x" });
    expect(Object.keys(errors).sort()).toEqual(["arms", "discount", "features", "floor", "id"]);
    expect(errors.features).toMatch(/linucb/);
    expect(banditDoc({ ...EMPTY_BANDIT, id: "ok", arms: "" }).errors.arms).toMatch(/at least one/);
    expect(banditDoc({ ...EMPTY_BANDIT, id: "ok", arms: "a:b" }).errors.arms).toMatch(/arm ids/);
    expect(banditDoc({ ...EMPTY_BANDIT, id: "ok", arms: "a", floor: "x" }).errors.floor).toBeDefined();
  });

  it("sends linucb features", () => {
    const { doc, errors } = banditDoc({ ...EMPTY_BANDIT, id: "ctx", policy: "linucb", arms: "a,b", features: "visits, device=mobile" });
    expect(errors).toEqual({});
    expect(doc.features).toEqual(["visits", "device=mobile"]);
  });
});

describe("parseContext", () => {
  it("accepts an object or nothing", () => {
    expect(parseContext("")).toEqual({});
    expect(parseContext('{"device": "mobile"}').context).toEqual({ device: "mobile" });
    expect(parseContext("[1]").error).toMatch(/object/);
    expect(parseContext("{").error).toMatch(/not JSON/);
  });
});

describe("allocation and the reward history", () => {
  it("shares pulls among arms", () => {
    expect(allocation([{ arm: "a", pulls: 30 }, { arm: "b", pulls: 10 }])).toEqual({ a: 0.75, b: 0.25 });
    expect(allocation([{ arm: "a", pulls: 0 }])).toEqual({ a: 0 });
  });

  it("samples only when the state moved (or a minute passed), keeping the newest", () => {
    const arms = [{ arm: "a", mean: 0.1, pulls: 10 }];
    let h = appendSample([], sampleOf(1000, arms, 10, 1));
    h = appendSample(h, sampleOf(6000, arms, 10, 1));
    expect(h).toHaveLength(1);
    h = appendSample(h, sampleOf(11000, arms, 12, 2));
    expect(h).toHaveLength(2);
    expect(h[1]).toMatchObject({ t: 11000, pulls: 12, rewards: 2, reward_rate: 2 / 12, "mean:a": 0.1 });
    h = appendSample(h, sampleOf(80000, arms, 12, 2));
    expect(h).toHaveLength(3);
    for (let i = 0; i < 10; i++) h = appendSample(h, sampleOf(100000 + i * 70000, arms, 12 + i, 2), 5);
    expect(h).toHaveLength(5);
    expect(h[4].t).toBe(100000 + 9 * 70000);
  });
});
