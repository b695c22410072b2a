// The /v1 routes of the optimization, campaign, model, analytics and content pages, on the shared
// client of ../api.ts (same key, same ApiError). Shapes list the fields the pages read; the API may
// send more. Writes are `quiet`: the form that sent them shows the error (and a 422's field errors)
// next to its inputs instead of the shell's banner.
import { del, get, post, put, type Query, type Window } from "../api";

const enc = encodeURIComponent;
const quiet = { quiet: true };

// ---- optimization: bandits and strategies (docs/decisions.md) ----

export const POLICIES = ["thompson", "ucb1", "epsilon_greedy", "linucb"] as const;
export const STRATEGIES = ["hybrid", "collaborative", "content", "trending", "popular"] as const;

export interface BanditConfig {
  id: string;
  policy: string;
  arms: string[];
  floor?: number;
  discount?: number;
  params?: Record<string, number>;
  features?: string[];
  rewards?: Record<string, number>;
  placement?: string | null;
  created_at?: number;
  [k: string]: unknown;
}
export interface ArmState {
  arm: string;
  active: boolean;
  pulls: number;
  reward: number;
  mean: number;
}
export interface BanditDetail {
  config: BanditConfig;
  state_version: number;
  pulls: number;
  rewards: number;
  arms: ArmState[];
  quarantine: Record<string, unknown> | null;
}
export interface Choice {
  bandit_id: string;
  decision_id: string;
  arm: string;
  explore: boolean;
  policy: string;
}
export interface StrategyOut {
  placement: string;
  bandit_id: string;
  arms: string[];
}

// ---- campaigns (docs/campaigns.md) ----

export const CHANNELS = ["email", "push", "sms", "webhook", "in_app"] as const;
export const CAMPAIGN_STATUSES = ["draft", "scheduled", "running", "paused", "completed", "archived"] as const;

export interface Campaign {
  id: string;
  name?: string;
  channel: string;
  audience: Record<string, unknown>;
  trigger: Record<string, unknown>;
  template: Record<string, string>;
  caps?: Record<string, number>;
  quiet_hours?: Record<string, unknown>;
  holdout?: number;
  goal?: Record<string, unknown>;
  status: string;
  version: number;
  created_at?: number;
  updated_at?: number;
  running_at?: number;
  [k: string]: unknown;
}
export interface Audience {
  campaign_id: string;
  type: string;
  size: number; // users in the audience (for a partial scan: among the users scanned)
  exact: boolean;
  scanned?: number; // everyone and rule audiences: users looked at
  share?: number; // matched / scanned, with its 95% Wilson interval when not exact
  share_low?: number;
  share_high?: number;
  stopped?: "scan" | "time" | null;
  note?: string;
  [k: string]: unknown;
}
export interface Preview {
  message_id: string;
  campaign_id: string;
  user_id: string;
  channel: string;
  address?: string | null;
  subject?: string | null;
  title?: string | null;
  body?: string | null;
  html?: string | null;
  items?: string[];
  deliverable?: boolean;
  [k: string]: unknown;
}
export interface Arm {
  users: number;
  conversions: number;
  rate: number | null;
  ci95?: [number, number] | null;
  revenue?: number;
}
export interface Performance {
  campaign_id: string;
  status: string;
  channel: string;
  counts: Record<string, number>;
  rates: Record<string, number | null>;
  goal?: Record<string, unknown>;
  treated?: Arm;
  holdout?: Arm;
  lift?: {
    absolute: number | null;
    ci95?: [number, number] | null;
    relative?: number | null;
    z?: number | null;
    p_value?: number | null;
    significant?: boolean;
  } | null;
  [k: string]: unknown;
}

// ---- models (docs/models.md) ----

export interface ModelVersion {
  model_id: string;
  version: number;
  type: string;
  config?: Record<string, number>;
  window_start?: number | null;
  window_end?: number | null;
  metrics?: Record<string, number>;
  status: string;
  created_at?: number;
  updated_at?: number;
  has_artifact?: boolean;
  [k: string]: unknown;
}
export interface ModelList {
  types: string[];
  models: ModelVersion[];
  placements: Record<string, { model_id: string; version: number; weights?: Record<string, number> | null }>;
}
export interface Monitoring {
  model_id: string;
  served_as?: Record<string, { impressions: number; clicks: number; ctr: number | null }>;
  [k: string]: unknown;
}

// ---- analytics and insights (docs/analytics.md, docs/insights.md) ----

export interface Attribution {
  from: number;
  to: number;
  window_s: number;
  total_revenue: number;
  attributed_revenue: number;
  attributed_orders: number;
  by_placement: Record<string, number>;
  by_variant: { experiment_id: string; variant_id: string; orders: number; revenue: number; impressions: number; recommendation_clicks: number }[];
}
export interface Journeys {
  from: number;
  to: number;
  journeys: { path: string[]; sessions: number }[];
}
export interface ItemStat {
  item_id: string;
  views: number;
  clicks: number;
  impressions: number;
  ctr: number | null;
  add_to_carts: number;
  units: number;
  revenue: number;
}
export interface Insight {
  insight_id: string;
  metric: string;
  focus: string;
  kind: string;
  direction: number;
  status: string;
  severity: "info" | "warning" | "critical";
  started_at: number;
  detected_at: number;
  before?: number | null;
  after?: number | null;
  dimension?: string | null;
  dimension_value?: string | null;
  explained_share?: number | null;
  causes?: { dimension: string; value: string; share: number; before?: number; after?: number }[];
  text: string;
  [k: string]: unknown;
}
export interface InsightList {
  from: number;
  to: number;
  count: number;
  insights: Insight[];
}

// ---- content (docs/content.md) ----

export interface ContentItem {
  item_id: string;
  title?: string;
  categories?: string[];
  tags?: string[];
  brand?: string | null;
  price?: number | null;
  currency?: string;
  stock?: number | null;
  available?: boolean;
  text?: string | null;
  url?: string | null;
  image_url?: string | null;
  metadata?: Record<string, string>;
  event_time?: number;
  [k: string]: unknown;
}
export interface ContentPage {
  items: ContentItem[];
  next_cursor: number | null;
  examined?: number;
}
export interface Written {
  item_id: string;
  event_id: string;
  event_type: string;
}
export interface ContentPerformance {
  item_id: string;
  interaction_weight: number | null;
  trending: number | null;
  neighbours: Record<string, string[]>;
}

export const extra = {
  bandits: {
    list: () => get<{ bandits: BanditConfig[] }>("/bandits"),
    get: (id: string) => get<BanditDetail>(`/bandits/${enc(id)}`, undefined, quiet),
    create: (doc: Record<string, unknown>) => post<BanditConfig>("/bandits", doc, quiet),
    choose: (id: string, body: { user_id: string; context?: Record<string, unknown> }) =>
      post<Choice>(`/bandits/${enc(id)}/choose`, body, quiet),
    arms: (id: string, body: { add: string[]; remove: string[] }) =>
      post<BanditConfig>(`/bandits/${enc(id)}/arms`, body, quiet),
    reset: (id: string) => post<Record<string, unknown>>(`/bandits/${enc(id)}/reset`, undefined, quiet),
    remove: (id: string) => del<void>(`/bandits/${enc(id)}`, quiet),
  },
  strategies: {
    set: (placement: string, body: Record<string, unknown>) =>
      put<StrategyOut>(`/strategies/${enc(placement)}`, body, quiet),
    clear: (placement: string) => del<void>(`/strategies/${enc(placement)}`, quiet),
    choose: (placement: string, userId: string) =>
      post<Choice>(`/strategies/${enc(placement)}/choose`, { user_id: userId }, quiet),
  },
  campaigns: {
    list: (status?: string) => get<{ campaigns: Campaign[] }>("/campaigns", { status }),
    get: (id: string) => get<Campaign>(`/campaigns/${enc(id)}`, undefined, quiet),
    create: (doc: Record<string, unknown>) => post<Campaign>("/campaigns", doc, quiet),
    transition: (id: string, action: "activate" | "pause" | "resume" | "complete" | "archive" | "schedule") =>
      post<Campaign>(`/campaigns/${enc(id)}/${action}`, undefined, quiet),
    remove: (id: string) => del<void>(`/campaigns/${enc(id)}`, quiet),
    audience: (id: string) => get<Audience>(`/campaigns/${enc(id)}/audience`, undefined, quiet),
    preview: (id: string, userId: string) =>
      post<Preview>(`/campaigns/${enc(id)}/preview`, { user_id: userId }, quiet),
    performance: (id: string) => get<Performance>(`/campaigns/${enc(id)}/performance`, undefined, quiet),
  },
  models: {
    list: () => get<ModelList>("/models"),
    versions: (id: string) => get<ModelVersion[]>(`/models/${enc(id)}/versions`, undefined, quiet),
    monitoring: (id: string) => get<Monitoring>(`/models/${enc(id)}/monitoring`, undefined, quiet),
    train: (id: string, body: Record<string, unknown>) =>
      post<{ model_id: string; job_pid?: number; log?: string }>(`/models/${enc(id)}/train`, body, quiet),
    activate: (id: string, version: number, body: Record<string, unknown>) =>
      post<Record<string, unknown>>(`/models/${enc(id)}/versions/${version}/activate`, body, quiet),
  },
  analytics: {
    attribution: (w: Window) => get<Attribution>("/analytics/attribution", { ...w }),
    journeys: (w: Window & { limit?: number }) => get<Journeys>("/analytics/journeys", { ...w }),
    items: (q: Window & { item_id?: string; limit?: number }) =>
      get<{ items: ItemStat[]; grain: string; from: number; to: number }>("/analytics/items", { ...q }),
    insights: (q: Query) => get<InsightList>("/analytics/insights", q),
    detect: (body: { timeframe: string; severity?: string }) =>
      post<{ analysed: { from: number; to: number; minutes_with_data: number }; detected: Insight[]; insights: Insight[] }>(
        "/analytics/insights", body, quiet),
  },
  content: {
    list: (q: Query) => get<ContentPage>("/content", q),
    get: (id: string) => get<ContentItem>(`/content/${enc(id)}`, undefined, quiet),
    put: (id: string, body: Record<string, unknown>) => put<Written>(`/content/${enc(id)}`, body, quiet),
    remove: (id: string) => del<Written>(`/content/${enc(id)}`, quiet),
    performance: (id: string) => get<ContentPerformance>(`/content/${enc(id)}/performance`, undefined, quiet),
    similar: (id: string) =>
      get<{ item_id: string; items: { item_id: string; score: number }[] }>(`/content/${enc(id)}/similar`, { limit: 5 }, quiet),
  },
};
