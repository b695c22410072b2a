import { describe, expect, it } from "vitest";
import { EMPTY_CAMPAIGN, actionsFor, campaignDoc } from "./campaignForm";
import { audienceText } from "./Campaigns";

const base = { ...EMPTY_CAMPAIGN, id: "cart-abandon", subject: "Hi {{ user.first_name }}", body: "Come back" };

describe("campaignDoc", () => {
  it("builds the API's document from the form", () => {
    const { doc, errors } = campaignDoc({ ...base, perUser: "2" });
    expect(errors).toEqual({});
    expect(doc).toEqual({
      id: "cart-abandon", name: "cart-abandon", channel: "email", audience: { type: "everyone" },
      trigger: { type: "event", event_type: "add_to_cart", delay_s: 1800, unless: "purchase" },
      template: { subject: "Hi {{ user.first_name }}", body: "Come back" },
      caps: { per_user: 2, per_campaign_user: 1, window_s: 86400 }, holdout: 0.1,
      goal: { event_type: "purchase", window_s: 86400 },
    });
  });

  it("asks for the parts the channel needs", () => {
    expect(campaignDoc({ ...base, channel: "push" }).errors).toEqual({ "template.title": "push needs a title" });
    const sms = campaignDoc({ ...base, channel: "sms" });
    expect(sms.errors).toEqual({});
    expect(sms.doc.template).toEqual({ body: "Come back" });
  });

  it("names bad audiences, caps, holdouts and windows by the API's field paths", () => {
    const { errors } = campaignDoc({
      ...base, id: "", audienceType: "users", users: " ", perUser: "-1", capWindowS: "0", holdout: "1",
      delayS: "0", goalWindowS: "10",
    });
    expect(Object.keys(errors).sort()).toEqual([
      "audience.users", "caps.per_user", "caps.window_s", "goal.window_s", "holdout", "id", "trigger.delay_s",
    ]);
    expect(campaignDoc({ ...base, audienceType: "rule", rule: "{" }).errors["audience.condition"]).toMatch(/not JSON/);
    expect(campaignDoc({ ...base, audienceType: "segment" }).errors["audience.segment"]).toBeDefined();
  });

  it("sends an api trigger and a segment audience as such", () => {
    const { doc } = campaignDoc({ ...base, triggerType: "api", audienceType: "segment", segment: "vip" });
    expect(doc.trigger).toEqual({ type: "api" });
    expect(doc.audience).toEqual({ type: "segment", segment: "vip" });
  });
});

describe("segment and scheduled triggers", () => {
  it("sends a segment trigger with its side, delay and backfill choice", () => {
    const { doc, errors } = campaignDoc({ ...base, unless: "", triggerType: "segment", triggerSegment: "vip", segmentOn: "leave",
      delayS: "60", backfill: true });
    expect(errors).toEqual({});
    expect(doc.trigger).toEqual({ type: "segment", segment: "vip", on: "leave", delay_s: 60, backfill: true });
    expect(campaignDoc({ ...base, triggerType: "segment" }).errors["trigger.segment"]).toBeDefined();
  });

  it("sends a one-off time (ISO or epoch ms) or a cron schedule, and names a bad one", () => {
    const at = campaignDoc({ ...base, triggerType: "schedule", at: "2027-01-04T09:00", tz: "Europe/Paris" });
    expect(at.errors).toEqual({});
    expect(at.doc.trigger).toEqual({ type: "schedule", at: "2027-01-04T09:00", tz: "Europe/Paris", user_tz: true });
    const ms = campaignDoc({ ...base, triggerType: "schedule", at: "1800000000000", userTz: false });
    expect(ms.doc.trigger).toEqual({ type: "schedule", at: 1800000000000, tz: "UTC", user_tz: false });
    const cron = campaignDoc({ ...base, triggerType: "schedule", scheduleKind: "cron", cron: "0 9 * * 1" });
    expect(cron.doc.trigger).toEqual({ type: "schedule", cron: "0 9 * * 1", tz: "UTC", user_tz: true });
    expect(campaignDoc({ ...base, triggerType: "schedule", scheduleKind: "cron", cron: "0 9 *" }).errors["trigger.cron"])
      .toBeDefined();
    expect(campaignDoc({ ...base, triggerType: "schedule" }).errors["trigger.at"]).toBeDefined();
  });
});

describe("actionsFor", () => {
  it("follows the lifecycle", () => {
    expect(actionsFor("draft")).toContain("activate");
    expect(actionsFor("running")).toEqual(["pause", "complete"]);
    expect(actionsFor("paused")).toEqual(["resume", "complete"]);
    expect(actionsFor("archived")).toEqual([]);
  });
});

describe("audienceText", () => {
  it("an exact count, or the matched users of a partial scan with their share and its interval", () => {
    expect(audienceText({ campaign_id: "c", type: "segment", size: 1240, exact: true })).toBe("1,240 users (segment, exact)");
    const part = audienceText({ campaign_id: "c", type: "rule", size: 1873, exact: false, scanned: 10000,
      share: 0.1873, share_low: 0.1798, share_high: 0.1951, stopped: "scan" });
    expect(part).toContain("1,873 users of the 10,000 scanned (rule, estimated)");
    expect(part).toContain("18.7% [18.0%, 19.5%] of the users with a profile or attributes");
  });
});
