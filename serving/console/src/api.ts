// The console's only way to the server: a typed client of the public /v1 API.
//
// The API key is pasted once on the sign-in screen and kept in sessionStorage (gone when the tab
// closes; never in the page source or the built assets). Every request sends it as `X-API-Key`, the
// header serving/security.py reads first. Errors become an ApiError: the HTTP status, one message a
// person can read, and the field errors of a 422 (FastAPI's `detail: [{loc, msg}]`) keyed by field
// path, so forms can show them next to their inputs.

export const KEY_STORAGE = "aura.console.apiKey";
export const API_PREFIX = "/v1";

export type FieldErrors = Record<string, string>;

export class ApiError extends Error {
  readonly status: number;
  readonly fields: FieldErrors;
  readonly degraded: string | null;

  constructor(status: number, message: string, fields: FieldErrors = {}, degraded: string | null = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.fields = fields;
    this.degraded = degraded;
  }
}

export function getKey(): string | null {
  try {
    return window.sessionStorage.getItem(KEY_STORAGE);
  } catch {
    return null;
  }
}

export function setKey(key: string): void {
  window.sessionStorage.setItem(KEY_STORAGE, key.trim());
}

export function clearKey(): void {
  window.sessionStorage.removeItem(KEY_STORAGE);
}

type Listener = (err: ApiError) => void;
const listeners = new Set<Listener>();

/** The app shell listens here to show API errors (and sign out on a 401). */
export function onApiError(fn: Listener): () => void {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

interface ValidationItem {
  loc?: (string | number)[];
  msg?: string;
}

/** FastAPI's error body as {message, fields}: `detail` is a string, or for a 422 a list of {loc, msg}. */
export function parseError(status: number, body: unknown, statusText = ""): { message: string; fields: FieldErrors } {
  const detail = body && typeof body === "object" ? (body as { detail?: unknown }).detail : undefined;
  const fields: FieldErrors = {};
  if (Array.isArray(detail)) {
    const parts: string[] = [];
    for (const raw of detail as ValidationItem[]) {
      const loc = (raw.loc ?? []).filter((p) => p !== "body" && p !== "query" && p !== "path");
      const name = loc.join(".") || "request";
      const msg = raw.msg ?? "invalid";
      fields[name] = fields[name] ? `${fields[name]}; ${msg}` : msg;
      parts.push(`${name}: ${msg}`);
    }
    return { message: parts.join("; ") || `HTTP ${status}`, fields };
  }
  if (typeof detail === "string") return { message: detail, fields };
  if (detail !== undefined) return { message: JSON.stringify(detail), fields };
  if (typeof body === "string" && body) return { message: body.slice(0, 300), fields };
  return { message: `HTTP ${status}${statusText ? ` ${statusText}` : ""}`, fields };
}

export type Query = Record<string, string | number | boolean | undefined | null>;

export interface RequestOptions {
  query?: Query;
  body?: unknown;
  /** Do not broadcast a failure to the shell's error banner (the caller shows it itself). */
  quiet?: boolean;
  /** Statuses whose body is the answer rather than an error (e.g. /health's 503 while degraded). */
  accept?: number[];
  signal?: AbortSignal;
}

export function buildUrl(path: string, query?: Query): string {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(query ?? {})) {
    if (v !== undefined && v !== null && v !== "") qs.set(k, String(v));
  }
  const s = qs.toString();
  return `${API_PREFIX}${path}${s ? `?${s}` : ""}`;
}

export async function request<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  const key = getKey();
  if (key) headers["X-API-Key"] = key;
  let body: string | undefined;
  if (opts.body !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(opts.body);
  }
  let res: Response;
  try {
    res = await fetch(buildUrl(path, opts.query), { method, headers, body, signal: opts.signal });
  } catch (exc) {
    if ((exc as Error).name === "AbortError") throw exc;
    const err = new ApiError(0, `the API did not answer: ${(exc as Error).message}`);
    if (!opts.quiet) listeners.forEach((fn) => fn(err));
    throw err;
  }
  const text = await res.text();
  let parsed: unknown = undefined;
  if (text) {
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = text;
    }
  }
  if (res.ok || opts.accept?.includes(res.status)) return parsed as T;
  const { message, fields } = parseError(res.status, parsed, res.statusText);
  const err = new ApiError(res.status, message, fields, res.headers.get("X-Aura-Degraded"));
  if (!opts.quiet || res.status === 401) listeners.forEach((fn) => fn(err));
  throw err;
}

export const get = <T>(path: string, query?: Query, opts: RequestOptions = {}) =>
  request<T>("GET", path, { ...opts, query });
export const post = <T>(path: string, body?: unknown, opts: RequestOptions = {}) =>
  request<T>("POST", path, { ...opts, body });
export const put = <T>(path: string, body?: unknown, opts: RequestOptions = {}) =>
  request<T>("PUT", path, { ...opts, body });
export const del = <T>(path: string, opts: RequestOptions = {}) => request<T>("DELETE", path, opts);

const enc = encodeURIComponent;

// ---- shapes of the answers the core pages read (the fields they use; the API may send more) ----

export interface Dependency {
  ok: boolean;
  latency_ms?: number | null;
  error?: string | null;
}
export interface Health {
  status: "ok" | "degraded" | "down";
  dependencies: Record<string, Dependency>;
}
export interface Stats {
  uptime_s: number;
  auth_enabled: boolean;
  breakers: Record<string, { state: string; opened_total: number; rejected_total: number }>;
  intake: Record<string, number>;
  deadletters: Record<string, number>;
  counters_stale: boolean;
}
export interface StreamLag {
  read_at: number;
  groups: { group: string; lag: number; topics: Record<string, { lag: number; partitions: number }> }[];
}
export interface Window {
  grain?: "minute" | "hour" | "day";
  timeframe?: string;
  from?: number | string;
  to?: number | string;
}
export interface Engagement {
  grain: string;
  from: number;
  to: number;
  source: string;
  active_users: number | null;
  events: Record<string, number>;
  series: { start: number; active_users: number; events: number }[];
}
export interface Funnel {
  steps: { name: string; events: number; users: number | null; conversion_from_previous?: number | null }[];
}
export interface Revenue {
  revenue: number;
  orders: number;
  average_order_value: number | null;
  series: { start: number; revenue: number; orders: number }[];
}
export interface RecItem {
  item_id: string;
  score: number;
  sources: string[];
}
export interface Recommendations {
  recommendation_id: string;
  user_id: string | null;
  method: string;
  strategy: string;
  placement: string;
  items: RecItem[];
  decision?: { bandit_id: string; decision_id: string; arm: string; explore: boolean } | null;
}
export interface Scored {
  item_id: string;
  score: number;
}
export interface Neighbours {
  item_id: string;
  kind: string;
  items: Scored[];
}
export interface Trending {
  category: string | null;
  half_life_h: number;
  items: Scored[];
}
export interface Profile {
  user_id: string;
  attributes: Record<string, unknown>;
  preferences: Record<string, unknown>;
  counts: Record<string, number>;
  first_seen: number | null;
  last_seen: number | null;
  recent_items: string[];
  sessions: number;
  orders: number;
  lifetime_value: number;
  engagement: number;
  lifecycle: string;
  lifecycle_at_last_event: string | null;
  affinities: Record<string, number>;
  segments: string[];
  source: string;
}
export interface ProfileSummary {
  user_id: string;
  attributes: Record<string, unknown>;
  segments: string[];
  last_seen: number | null;
  engagement: number;
  lifecycle: string;
}
export interface ProfilePage {
  profiles: ProfileSummary[];
  next_cursor: string | null;
  index_delay_ms: number;
}
export interface Activity {
  user_id: string;
  counts: Record<string, number>;
  first_seen: number | null;
  last_seen: number | null;
  recent_items: string[];
  source: string;
}
export interface Segment {
  name: string;
  rule: unknown;
  source: "api" | "settings";
  members: number;
  description?: string;
  backfill: { state: string; scanned?: number; changed?: number; members?: number } | null;
}
export interface Rule {
  id: string;
  name?: string;
  description?: string;
  priority?: number;
  enabled?: boolean;
  channels?: string[];
  conditions?: unknown;
  content?: unknown;
  variant?: string | null;
}
export interface EvaluateIn {
  user_id: string;
  channel: "web" | "email" | "mobile";
  context?: { page?: string; placement?: string; device?: string; locale?: string; referrer?: string };
  profile?: Record<string, unknown>;
  segments?: string[];
  all_matches?: boolean;
}
export interface Evaluation {
  user_id: string;
  channel: string;
  rule_id: string | null;
  variant: string | null;
  content: unknown;
  matches: { rule_id: string; priority: number; variant: string | null; content: unknown }[];
}
export interface Variant {
  id: string;
  weight?: number;
  payload?: Record<string, unknown>;
}
export interface Experiment {
  id: string;
  name?: string;
  description?: string;
  status: string;
  variants?: Variant[];
  factors?: Record<string, string[]>;
  control?: string;
  coverage?: number;
  conversion_events?: string[];
  winner?: string | null;
  created_at?: number;
  targeting?: unknown;
  [k: string]: unknown;
}
export interface VariantResult {
  variant: string;
  weight: number;
  exposures: number;
  conversions: number;
  conversion_rate: number;
  ci95: [number, number];
  revenue: number;
  revenue_per_exposure: number;
  uplift?: number | null;
  z?: number;
  p_value?: number;
  chance_to_beat_control?: number;
  expected_loss?: number;
}
export interface ExperimentResults {
  experiment_id: string;
  status: string;
  metric: string;
  control: string;
  winner: string | null;
  variants: VariantResult[];
  srm: { chi2: number; p_value: number; mismatch: boolean };
}
export interface PlacementModel {
  model_id: string;
  version: number;
  weights: Record<string, number> | null;
  updated_at: number | null;
}

export const api = {
  health: () => get<Health>("/health", undefined, { accept: [503], quiet: true }),
  stats: () => get<Stats>("/stats", undefined, { quiet: true }),
  lag: () => get<StreamLag>("/stats/lag", undefined, { quiet: true }),
  analytics: {
    engagement: (w: Window) => get<Engagement>("/analytics/engagement", { ...w }, { quiet: true }),
    funnel: (w: Window) => get<Funnel>("/analytics/funnel", { ...w }, { quiet: true }),
    revenue: (w: Window) => get<Revenue>("/analytics/revenue", { ...w }, { quiet: true }),
  },
  profiles: {
    list: (q: Query) => get<ProfilePage>("/profiles", q, { quiet: true }),
    get: (userId: string) => get<Profile>(`/profiles/${enc(userId)}`, undefined, { quiet: true }),
    activity: (userId: string) => get<Activity>(`/profiles/${enc(userId)}/activity`, undefined, { quiet: true }),
  },
  segments: {
    list: () => get<{ segments: Segment[] }>("/segments", undefined, { quiet: true }),
    create: (doc: Record<string, unknown>) => post<Segment>("/segments", doc, { quiet: true }),
    replace: (name: string, doc: Record<string, unknown>) => put<Segment>(`/segments/${enc(name)}`, doc, { quiet: true }),
    remove: (name: string) => del<unknown>(`/segments/${enc(name)}`),
  },
  recs: {
    forUser: (userId: string, q: Query = {}) =>
      get<Recommendations>(`/recommendations/users/${enc(userId)}`, q, { quiet: true }),
    generate: (body: Record<string, unknown>) => post<Recommendations>("/recommendations/generate", body, { quiet: true }),
    similar: (itemId: string, q: Query = {}) =>
      get<Neighbours>(`/recommendations/similar/${enc(itemId)}`, q, { quiet: true }),
    alsoBought: (itemId: string, q: Query = {}) =>
      get<Neighbours>(`/recommendations/also-bought/${enc(itemId)}`, q, { quiet: true }),
    trending: (q: Query = {}) => get<Trending>("/recommendations/trending", q, { quiet: true }),
  },
  models: {
    list: () =>
      get<{ types: string[]; models: Record<string, unknown>[]; placements: Record<string, PlacementModel> }>(
        "/models",
        undefined,
        { quiet: true },
      ),
  },
  rules: {
    list: () => get<{ rules: Rule[] }>("/personalization/rules", undefined, { quiet: true }),
    create: (rule: Rule) => post<Rule>("/personalization/rules", rule, { quiet: true }),
    replace: (rule: Rule) => put<Rule>(`/personalization/rules/${enc(rule.id)}`, rule, { quiet: true }),
    remove: (id: string) => del<unknown>(`/personalization/rules/${enc(id)}`),
    evaluate: (body: EvaluateIn) => post<Evaluation>("/personalization/evaluate", body, { quiet: true }),
  },
  experiments: {
    list: () => get<{ experiments: Experiment[] }>("/experiments", undefined, { quiet: true }),
    create: (doc: Record<string, unknown>) => post<Experiment>("/experiments", doc, { quiet: true }),
    setStatus: (id: string, status: string, winner?: string) =>
      post<Experiment>(`/experiments/${enc(id)}/status`, { status, ...(winner ? { winner } : {}) }, { quiet: true }),
    results: (id: string, metric?: string) =>
      get<ExperimentResults>(`/experiments/${enc(id)}/results`, { metric }, { quiet: true }),
  },
};
