// The campaign definition form (channel, audience, trigger, template, caps, holdout, goal), shown
// by the campaigns page's "New campaign". It is checked here first; the API then checks template
// syntax, segment names and the rest, and its 422 field errors are shown at their inputs. A created
// campaign is a draft: the campaigns page then shows its audience size, a preview for a user, and
// the activate button.
import { Button, Checkbox, Form, FormLayout, Select, Text, TextField } from "@shopify/polaris";
import { useState } from "react";
import { get } from "../../api";
import { CHANNELS, extra } from "../../api/extra";
import { useApi } from "../../hooks";
import { FormFailure, fieldError, useSubmission } from "../forms";
import { BEHAVIOR_TYPES, EMPTY_CAMPAIGN, REQUIRED_PARTS, campaignDoc, type CampaignValues } from "./campaignForm";

const opts = (xs: readonly string[]) => xs.map((x) => ({ label: x, value: x }));

export function CampaignForm({ onCreated }: { onCreated: (id: string) => void }) {
  const [v, setV] = useState<CampaignValues>(EMPTY_CAMPAIGN);
  const segments = useApi(() => get<{ segments: { name: string; members?: number }[] }>("/segments", undefined, { quiet: true }), []);
  const sub = useSubmission();
  const set = (k: keyof CampaignValues) => (value: string) => setV((cur) => ({ ...cur, [k]: value }));
  const check = (k: keyof CampaignValues) => (value: boolean) => setV((cur) => ({ ...cur, [k]: value }));
  const segmentOptions = [{ label: "—", value: "" }, ...(segments.data?.segments ?? []).map((s) => ({
    label: `${s.name}${s.members !== undefined ? ` (${s.members})` : ""}`, value: s.name }))];
  const err = (k: string) => fieldError(sub.errors, k);
  const parts = REQUIRED_PARTS[v.channel] ?? [];
  const submit = async () => {
    const { doc, errors } = campaignDoc(v);
    const made = await sub.submit(() => errors, () => extra.campaigns.create(doc));
    if (made) onCreated(made.id);
  };
  return (
    <Form onSubmit={submit}>
      <FormLayout>
        <FormFailure sub={sub} />
        <FormLayout.Group>
          <TextField label="Campaign id" value={v.id} onChange={set("id")} autoComplete="off" error={err("id")} />
          <TextField label="Name" value={v.name} onChange={set("name")} autoComplete="off" error={err("name")} />
          <Select label="Channel" options={opts(CHANNELS)} value={v.channel} onChange={set("channel")} error={err("channel")} />
        </FormLayout.Group>
        <Text as="h3" variant="headingSm">Audience</Text>
        <FormLayout.Group>
          <Select label="Who" value={v.audienceType} onChange={set("audienceType")} error={err("audience")}
            options={[{ label: "everyone", value: "everyone" }, { label: "a segment", value: "segment" },
              { label: "a list of users", value: "users" }, { label: "a rule (condition JSON)", value: "rule" }]} />
          {v.audienceType === "segment" && (
            <Select label="Segment" value={v.segment} onChange={set("segment")} error={err("audience.segment")}
              options={segmentOptions} />
          )}
          {v.audienceType === "users" && (
            <TextField label="User ids" value={v.users} onChange={set("users")} autoComplete="off" multiline={2}
              error={err("audience.users")} helpText="Comma- or line-separated" />
          )}
          {v.audienceType === "rule" && (
            <TextField label="Condition" value={v.rule} onChange={set("rule")} autoComplete="off" multiline={3}
              error={err("audience.condition")} placeholder='{"field": "profile.ltv", "op": ">", "value": 100}' />
          )}
        </FormLayout.Group>
        <Text as="h3" variant="headingSm">Trigger</Text>
        <FormLayout.Group>
          <Select label="When" value={v.triggerType} onChange={set("triggerType")} error={err("trigger")}
            options={[{ label: "an event happens", value: "event" }, { label: "the API triggers it (transactional)", value: "api" },
              { label: "a user enters or leaves a segment", value: "segment" },
              { label: "at a time or on a schedule (whole audience)", value: "schedule" }]} />
          {v.triggerType === "event" && (
            <Select label="Event" options={opts(BEHAVIOR_TYPES)} value={v.eventType} onChange={set("eventType")}
              error={err("trigger.event_type")} />
          )}
          {v.triggerType === "segment" && (
            <Select label="Segment" value={v.triggerSegment} onChange={set("triggerSegment")} error={err("trigger.segment")}
              options={segmentOptions} />
          )}
          {v.triggerType === "segment" && (
            <Select label="On" value={v.segmentOn} onChange={set("segmentOn")} error={err("trigger.on")}
              options={[{ label: "enter", value: "enter" }, { label: "leave", value: "leave" }]} />
          )}
          {(v.triggerType === "event" || v.triggerType === "segment") && (
            <TextField label="Delay (s)" value={v.delayS} onChange={set("delayS")} autoComplete="off" error={err("trigger.delay_s")} />
          )}
          {v.triggerType === "event" && (
            <Select label="Unless followed by" options={[{ label: "—", value: "" }, ...opts(BEHAVIOR_TYPES)]} value={v.unless}
              onChange={set("unless")} error={err("trigger.unless")} />
          )}
        </FormLayout.Group>
        {v.triggerType === "segment" && (
          <Checkbox label="Also fire for joins found by a backfill (a new or changed segment)" checked={v.backfill}
            onChange={check("backfill")} error={err("trigger.backfill")} />
        )}
        {v.triggerType === "schedule" && (
          <FormLayout.Group>
            <Select label="Schedule" value={v.scheduleKind} onChange={set("scheduleKind")}
              options={[{ label: "once, at a time", value: "at" }, { label: "recurring (cron)", value: "cron" }]} />
            {v.scheduleKind === "at" ? (
              <TextField label="At" value={v.at} onChange={set("at")} autoComplete="off" error={err("trigger.at")}
                placeholder="2027-01-04T09:00" helpText="ISO without offset: each user's local time; with offset or epoch ms: one instant" />
            ) : (
              <TextField label="Cron" value={v.cron} onChange={set("cron")} autoComplete="off" error={err("trigger.cron")}
                helpText="minute hour day month weekday" />
            )}
            <TextField label="Time zone" value={v.tz} onChange={set("tz")} autoComplete="off" error={err("trigger.tz")}
              helpText="IANA name, for users without one" />
          </FormLayout.Group>
        )}
        {v.triggerType === "schedule" && (
          <Checkbox label="In each user's own time zone (profile attribute timezone)" checked={v.userTz}
            onChange={check("userTz")} error={err("trigger.user_tz")} />
        )}
        <Text as="h3" variant="headingSm">Template (Jinja2: user, profile, event, recommendations)</Text>
        {parts.includes("subject") && (
          <TextField label="Subject" value={v.subject} onChange={set("subject")} autoComplete="off" error={err("template.subject")}
            placeholder="Still thinking about it, {{ user.first_name | default('there') }}?" />
        )}
        {parts.includes("title") && (
          <TextField label="Title" value={v.title} onChange={set("title")} autoComplete="off" error={err("template.title")} />
        )}
        <TextField label="Body" value={v.body} onChange={set("body")} autoComplete="off" multiline={4} error={err("template.body")}
          placeholder={"You may also like:\n{% for r in recommendations %}- {{ r.title }}\n{% endfor %}"} />
        <Text as="h3" variant="headingSm">Caps, holdout and goal</Text>
        <FormLayout.Group condensed>
          <TextField label="Per user (channel, all campaigns)" value={v.perUser} onChange={set("perUser")} autoComplete="off"
            error={err("caps.per_user")} helpText="0 or empty: none" />
          <TextField label="Per user (this campaign)" value={v.perCampaignUser} onChange={set("perCampaignUser")} autoComplete="off"
            error={err("caps.per_campaign_user")} />
          <TextField label="Cap window (s)" value={v.capWindowS} onChange={set("capWindowS")} autoComplete="off" error={err("caps.window_s")} />
        </FormLayout.Group>
        <FormLayout.Group condensed>
          <TextField label="Holdout share" value={v.holdout} onChange={set("holdout")} autoComplete="off" error={err("holdout")}
            helpText="Qualifying users who get nothing, for the lift" />
          <Select label="Goal event" options={[{ label: "—", value: "" }, ...opts(BEHAVIOR_TYPES)]} value={v.goalEvent}
            onChange={set("goalEvent")} error={err("goal.event_type")} />
          <TextField label="Goal window (s)" value={v.goalWindowS} onChange={set("goalWindowS")} autoComplete="off" error={err("goal.window_s")} />
        </FormLayout.Group>
        <Button submit variant="primary" loading={sub.busy}>Create draft</Button>
      </FormLayout>
    </Form>
  );
}
