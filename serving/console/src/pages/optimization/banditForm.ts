// The checks of the bandit form, the same as the API's (aura/state/bandits.py validate_bandit), so a
// bad value is shown at once and nothing is sent; the server's 422 is still shown if it disagrees.
import type { Errors } from "../forms";
import { parseNumber, splitList } from "../forms";

export const BANDIT_ID = /^[A-Za-z0-9_.-]{1,64}$/;
export const ARM_ID = /^[A-Za-z0-9_.=-]{1,64}$/;
export const MAX_ARMS = 100;
export const MAX_FEATURES = 32;

export interface BanditValues {
  id: string;
  policy: string;
  arms: string;
  floor: string;
  discount: string;
  features: string;
}

export const EMPTY_BANDIT: BanditValues = { id: "", policy: "thompson", arms: "", floor: "0.05", discount: "", features: "" };

/** The document to POST, or the errors by field. */
export function banditDoc(v: BanditValues): { doc: Record<string, unknown>; errors: Errors } {
  const errors: Errors = {};
  const doc: Record<string, unknown> = { id: v.id.trim(), policy: v.policy };
  if (!BANDIT_ID.test(v.id.trim())) errors.id = "1-64 letters, digits, '_', '.', '-'";
  const rawArms = v.arms.split(/[,\n]/).map((s) => s.trim()).filter(Boolean);
  const arms = splitList(v.arms);
  if (arms.length === 0) errors.arms = "at least one arm";
  else if (arms.length !== rawArms.length) errors.arms = "arms must be distinct";
  else if (arms.length > MAX_ARMS) errors.arms = `at most ${MAX_ARMS} arms`;
  else if (!arms.every((a) => ARM_ID.test(a))) errors.arms = "arm ids: 1-64 letters, digits, '_', '.', '=', '-'";
  doc.arms = arms;
  const floor = parseNumber(v.floor);
  if (floor !== undefined) {
    if (!(floor >= 0 && floor <= 0.5)) errors.floor = "exploration floor in [0, 0.5]";
    doc.floor = floor;
  }
  const discount = parseNumber(v.discount);
  if (discount !== undefined) {
    if (!(discount >= 0.5 && discount <= 1)) errors.discount = "discount in [0.5, 1]";
    doc.discount = discount;
  }
  const features = splitList(v.features);
  if (features.length > 0) {
    if (v.policy !== "linucb") errors.features = "features are used by the contextual policy linucb only";
    else if (features.length > MAX_FEATURES) errors.features = `at most ${MAX_FEATURES} features`;
    doc.features = features;
  }
  return { doc, errors };
}

/** A context typed as JSON (`{"device": "mobile"}`) or empty; the error names what is wrong. */
export function parseContext(text: string): { context?: Record<string, unknown>; error?: string } {
  if (!text.trim()) return {};
  try {
    const v = JSON.parse(text);
    if (!v || typeof v !== "object" || Array.isArray(v)) return { error: "a JSON object, e.g. {\"device\": \"mobile\"}" };
    return { context: v as Record<string, unknown> };
  } catch (exc) {
    return { error: `not JSON: ${(exc as Error).message}` };
  }
}

export interface Sample {
  t: number;
  [arm: string]: number;
}

/** One point of the reward-over-time chart: each arm's mean reward and the pulls so far. */
export function sampleOf(t: number, arms: { arm: string; mean: number; pulls: number }[], pulls: number, rewards: number): Sample {
  const s: Sample = { t, pulls, rewards, reward_rate: pulls > 0 ? rewards / pulls : 0 };
  for (const a of arms) s[`mean:${a.arm}`] = a.mean;
  return s;
}

/** Appends a sample unless the state did not move since the last one; keeps the newest `max`. */
export function appendSample(history: Sample[], s: Sample, max = 720): Sample[] {
  const last = history[history.length - 1];
  if (last && last.pulls === s.pulls && last.rewards === s.rewards && s.t - last.t < 60_000) return history;
  const next = [...history, s];
  return next.length > max ? next.slice(next.length - max) : next;
}

/** Each arm's share of all pulls (its allocation), 0 when nothing was pulled yet. */
export function allocation(arms: { arm: string; pulls: number }[]): Record<string, number> {
  const total = arms.reduce((n, a) => n + a.pulls, 0);
  return Object.fromEntries(arms.map((a) => [a.arm, total > 0 ? a.pulls / total : 0]));
}
