// The checks of the campaign form, mirroring aura/state/campaigns.py (ids, channel parts, caps,
// holdout, trigger and goal windows), and the document it sends. Template syntax, segment names and
// anything else only the server knows come back as its 422 field errors.
import type { Errors } from "../forms";
import { parseNumber, splitList } from "../forms";

export const CAMPAIGN_ID = /^[A-Za-z0-9_.-]{1,64}$/;
export const BEHAVIOR_TYPES = [
  "view", "click", "add_to_cart", "remove_from_cart", "purchase", "rating", "search",
  "impression", "recommendation_click", "message_open", "message_click", "custom",
] as const;
/** the template parts each channel needs */
export const REQUIRED_PARTS: Record<string, string[]> = {
  email: ["subject", "body"], push: ["title", "body"], sms: ["body"], webhook: ["body"], in_app: ["title", "body"],
};
export const MAX_DELAY_S = 30 * 24 * 3600;

export interface CampaignValues {
  id: string;
  name: string;
  channel: string;
  audienceType: "everyone" | "segment" | "users" | "rule";
  segment: string;
  users: string;
  rule: string;
  triggerType: "event" | "api" | "segment" | "schedule";
  eventType: string;
  delayS: string;
  unless: string;
  triggerSegment: string;
  segmentOn: "enter" | "leave";
  backfill: boolean;
  scheduleKind: "at" | "cron";
  at: string;
  cron: string;
  tz: string;
  userTz: boolean;
  subject: string;
  title: string;
  body: string;
  perUser: string;
  perCampaignUser: string;
  capWindowS: string;
  holdout: string;
  goalEvent: string;
  goalWindowS: string;
}

export const EMPTY_CAMPAIGN: CampaignValues = {
  id: "", name: "", channel: "email", audienceType: "everyone", segment: "", users: "", rule: "",
  triggerType: "event", eventType: "add_to_cart", delayS: "1800", unless: "purchase",
  triggerSegment: "", segmentOn: "enter", backfill: false,
  scheduleKind: "at", at: "", cron: "0 9 * * 1", tz: "UTC", userTz: true,
  subject: "", title: "", body: "", perUser: "", perCampaignUser: "1", capWindowS: "86400",
  holdout: "0.1", goalEvent: "purchase", goalWindowS: "86400",
};

function intIn(errors: Errors, key: string, text: string, lo: number, hi: number): number | undefined {
  const n = parseNumber(text);
  if (n === undefined) return undefined;
  if (!Number.isInteger(n) || n < lo || n > hi) errors[key] = `an integer in [${lo}, ${hi}]`;
  return n;
}

/** The document to POST, or the errors by field path (the API's `loc` without "body"). */
export function campaignDoc(v: CampaignValues): { doc: Record<string, unknown>; errors: Errors } {
  const errors: Errors = {};
  const id = v.id.trim();
  if (!CAMPAIGN_ID.test(id)) errors.id = "1-64 letters, digits, '_', '.', '-'";
  if (v.name.length > 200) errors.name = "at most 200 characters";
  const doc: Record<string, unknown> = { id, name: v.name.trim() || id, channel: v.channel };

  if (v.audienceType === "segment") {
    if (!v.segment.trim()) errors["audience.segment"] = "pick a segment";
    doc.audience = { type: "segment", segment: v.segment.trim() };
  } else if (v.audienceType === "users") {
    const users = splitList(v.users);
    if (users.length === 0) errors["audience.users"] = "at least one user id";
    doc.audience = { type: "users", users };
  } else if (v.audienceType === "rule") {
    try {
      doc.audience = { type: "rule", condition: JSON.parse(v.rule) };
    } catch (exc) {
      errors["audience.condition"] = `not JSON: ${(exc as Error).message}`;
    }
  } else {
    doc.audience = { type: "everyone" };
  }

  if (v.triggerType === "api") {
    doc.trigger = { type: "api" };
  } else if (v.triggerType === "segment") {
    if (!v.triggerSegment.trim()) errors["trigger.segment"] = "pick a segment";
    const trigger: Record<string, unknown> = { type: "segment", segment: v.triggerSegment.trim(), on: v.segmentOn };
    const delay = intIn(errors, "trigger.delay_s", v.delayS, 0, MAX_DELAY_S);
    if (delay !== undefined) trigger.delay_s = delay;
    if (v.backfill) trigger.backfill = true;
    doc.trigger = trigger;
  } else if (v.triggerType === "schedule") {
    const trigger: Record<string, unknown> = { type: "schedule", tz: v.tz.trim() || "UTC", user_tz: v.userTz };
    if (v.scheduleKind === "cron") {
      const fields = v.cron.trim().split(/\s+/).filter(Boolean).length;
      if (fields !== 5 && fields !== 6) errors["trigger.cron"] = "5 fields (minute hour day month weekday), or 6 with seconds last";
      trigger.cron = v.cron.trim();
    } else {
      const at = v.at.trim();
      if (!at) errors["trigger.at"] = "a time: ISO (2027-01-04T09:00, read in each user's zone) or epoch ms";
      trigger.at = /^\d+$/.test(at) ? Number(at) : at;
    }
    doc.trigger = trigger;
  } else {
    const trigger: Record<string, unknown> = { type: "event", event_type: v.eventType };
    const delay = intIn(errors, "trigger.delay_s", v.delayS, 0, MAX_DELAY_S);
    if (delay !== undefined) trigger.delay_s = delay;
    if (v.unless) {
      trigger.unless = v.unless;
      if (!delay) errors["trigger.delay_s"] = "'unless' needs a positive delay (the window)";
    }
    doc.trigger = trigger;
  }

  const template: Record<string, string> = {};
  const parts: Record<string, string> = { subject: v.subject, title: v.title, body: v.body };
  for (const part of REQUIRED_PARTS[v.channel] ?? []) {
    if (!parts[part].trim()) errors[`template.${part}`] = `${v.channel} needs a ${part}`;
    template[part] = parts[part];
  }
  doc.template = template;

  const caps: Record<string, number> = {};
  const perUser = intIn(errors, "caps.per_user", v.perUser, 0, 1000);
  const perCampaign = intIn(errors, "caps.per_campaign_user", v.perCampaignUser, 0, 1000);
  const window = intIn(errors, "caps.window_s", v.capWindowS, 1, 366 * 86400);
  if (perUser !== undefined) caps.per_user = perUser;
  if (perCampaign !== undefined) caps.per_campaign_user = perCampaign;
  if (window !== undefined) caps.window_s = window;
  doc.caps = caps;

  const holdout = parseNumber(v.holdout);
  if (holdout !== undefined) {
    if (!(holdout >= 0 && holdout < 1)) errors.holdout = "a share in [0, 1), e.g. 0.1";
    doc.holdout = holdout;
  }
  if (v.goalEvent) {
    const goal: Record<string, unknown> = { event_type: v.goalEvent };
    const gw = intIn(errors, "goal.window_s", v.goalWindowS, 60, 90 * 86400);
    if (gw !== undefined) goal.window_s = gw;
    doc.goal = goal;
  }
  return { doc, errors };
}

/** Which lifecycle actions a campaign in `status` allows (docs/campaigns.md). */
export function actionsFor(status: string): ("activate" | "schedule" | "pause" | "resume" | "complete" | "archive")[] {
  switch (status) {
    case "draft":
      return ["activate", "schedule", "archive"];
    case "scheduled":
      return ["activate", "pause", "archive"];
    case "running":
      return ["pause", "complete"];
    case "paused":
      return ["resume", "complete"];
    case "completed":
      return ["archive"];
    default:
      return [];
  }
}
