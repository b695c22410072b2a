// Campaigns: every campaign with its status; the selected one's definition, audience size estimate,
// a preview of its message for any user (nothing is sent), lifecycle actions (activate, pause, ...),
// and performance: delivery and engagement counts, conversion of treated users against the holdout,
// and the lift with its 95% interval.
import { Badge, BlockStack, Button, ButtonGroup, Card, Form, InlineStack, Layout, Page, Select, Text, TextField } from "@shopify/polaris";
import { useState } from "react";
import { ApiError } from "../../api";
import { CAMPAIGN_STATUSES, extra, type Audience, type Campaign, type Performance, type Preview } from "../../api/extra";
import { LoadError, Loading, fmtValue } from "../../components/common";
import { useApi, usePoll } from "../../hooks";
import { navigate } from "../../router";
import { ActionError, FormFailure, fieldError, pct, useSubmission, when } from "../forms";
import type { PageProps } from "../types";
import { actionsFor } from "./campaignForm";
import { CampaignForm } from "./CampaignForm";

export const PATH = "/campaigns";
const TONE: Record<string, "success" | "attention" | "info" | "critical" | undefined> = {
  running: "success", paused: "attention", scheduled: "info", draft: undefined, completed: "info", archived: undefined,
};

export function StatusBadge({ status }: { status: string }) {
  return <Badge tone={TONE[status]}>{status}</Badge>;
}

function ci(v: [number, number] | null | undefined, f: (x: number) => string = (x) => pct(x)): string {
  return v ? `[${f(v[0])}, ${f(v[1])}]` : "";
}

// Exact: the count. A partial scan: the users matched among those scanned, and their share with its
// 95% interval (an estimate of the share of all users with a profile or attributes).
export function audienceText(a: Audience): string {
  if (a.exact) return `${fmtValue(a.size)} users (${a.type}, exact)`;
  const share = a.share_low !== undefined && a.share_high !== undefined ? ci([a.share_low, a.share_high]) : "";
  return `${fmtValue(a.size)} users of the ${fmtValue(a.scanned ?? 0)} scanned (${a.type}, estimated): ` +
    `${pct(a.share)} ${share} of the users with a profile or attributes`;
}

export function PerformanceView({ perf }: { perf: Performance }) {
  const lift = perf.lift;
  return (
    <BlockStack gap="300">
      <div className="aura-grid">
        <table className="aura-table" data-testid="campaign-counts">
          <tbody>
            {Object.entries(perf.counts).map(([k, n]) => (
              <tr key={k}><td>{k}</td><td className="num">{fmtValue(n)}</td></tr>
            ))}
            {Object.entries(perf.rates).map(([k, r]) => (
              <tr key={`rate-${k}`}><td>{k} rate</td><td className="num">{pct(r)}</td></tr>
            ))}
          </tbody>
        </table>
        <table className="aura-table" data-testid="campaign-lift">
          <thead>
            <tr><th /><th className="num">Users</th><th className="num">Conversions</th><th className="num">Rate (95% CI)</th><th className="num">Revenue</th></tr>
          </thead>
          <tbody>
            {(["treated", "holdout"] as const).map((arm) => {
              const a = perf[arm];
              return (
                <tr key={arm}>
                  <td>{arm}</td>
                  <td className="num">{fmtValue(a?.users ?? 0)}</td>
                  <td className="num">{fmtValue(a?.conversions ?? 0)}</td>
                  <td className="num">{pct(a?.rate)} {ci(a?.ci95)}</td>
                  <td className="num">{fmtValue(a?.revenue ?? 0)}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
      <div data-testid="lift">
      <Text as="p">
        {lift && lift.absolute !== null && lift.absolute !== undefined ? (
          <>
            Lift against the holdout: <strong>{pct(lift.absolute, 2)}</strong> points {ci(lift.ci95, (x) => pct(x, 2))}
            {lift.relative !== null && lift.relative !== undefined && <> ({pct(lift.relative)} relative)</>}
            {lift.p_value !== null && lift.p_value !== undefined && <>, p = {lift.p_value.toFixed(3)}</>}{" "}
            {lift.significant ? <Badge tone="success">significant</Badge> : <Badge>not significant yet</Badge>}
          </>
        ) : (
          "No lift yet: it needs conversions counted in both the treated group and the holdout."
        )}
      </Text>
      </div>
    </BlockStack>
  );
}

function PreviewForm({ campaignId }: { campaignId: string }) {
  const [user, setUser] = useState("");
  const [preview, setPreview] = useState<Preview | null>(null);
  const sub = useSubmission();
  const submit = async () => {
    const got = await sub.submit((): Record<string, string> => (user.trim() ? {} : { user_id: "a user id" }),
      () => extra.campaigns.preview(campaignId, user.trim()));
    setPreview(got ?? null);
  };
  return (
    <BlockStack gap="200">
      <Form onSubmit={submit}>
        <InlineStack gap="200" blockAlign="end">
          <TextField label="Preview for user" value={user} onChange={setUser} autoComplete="off" error={fieldError(sub.errors, "user_id")} />
          <Button submit loading={sub.busy}>Preview</Button>
        </InlineStack>
      </Form>
      <FormFailure sub={sub} title="Could not render the message" />
      {preview && (
        <div data-testid="campaign-preview" className="aura-preview">
          <Text as="p" tone="subdued">
            To {preview.address || "(no address)"} · {preview.deliverable ? "deliverable" : "not deliverable (no address or consent)"} ·
            items {(preview.items ?? []).join(", ") || "none"}
          </Text>
          {preview.subject && <Text as="p" variant="headingSm">{preview.subject}</Text>}
          {preview.title && <Text as="p" variant="headingSm">{preview.title}</Text>}
          <pre style={{ whiteSpace: "pre-wrap", margin: 0 }}>{preview.body}</pre>
        </div>
      )}
    </BlockStack>
  );
}

function CampaignPanel({ id, onChanged }: { id: string; onChanged: () => void }) {
  const campaign = useApi<Campaign>(() => extra.campaigns.get(id), [id]);
  const audience = useApi(() => extra.campaigns.audience(id), [id]);
  const perf = usePoll(() => extra.campaigns.performance(id), 10_000, [id]);
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState<string | null>(null);
  const act = async (name: string, fn: () => Promise<unknown>, after?: () => void) => {
    setError(null);
    setBusy(name);
    try {
      await fn();
      campaign.reload();
      perf.reload();
      onChanged();
      after?.();
    } catch (exc) {
      setError(exc instanceof ApiError ? exc : new ApiError(0, String(exc)));
    } finally {
      setBusy(null);
    }
  };
  const c = campaign.data;
  return (
    <BlockStack gap="400">
      <Card>
        <BlockStack gap="300">
          <LoadError error={campaign.error} />
          <Loading loading={campaign.loading && !c}>
            {c && (
              <BlockStack gap="200">
                <InlineStack align="space-between" blockAlign="center">
                  <Text as="h2" variant="headingMd">
                    {c.name ?? c.id} <span data-testid="campaign-status"><StatusBadge status={c.status} /></span>
                  </Text>
                  <ButtonGroup>
                    {actionsFor(c.status).map((a) => (
                      <Button key={a} loading={busy === a} variant={a === "activate" ? "primary" : undefined}
                        onClick={() => act(a, () => extra.campaigns.transition(id, a))}>
                        {a[0].toUpperCase() + a.slice(1)}
                      </Button>
                    ))}
                    {!["running", "paused"].includes(c.status) && (
                      <Button tone="critical" loading={busy === "delete"}
                        onClick={() => act("delete", () => extra.campaigns.remove(id), () => navigate(PATH))}>
                        Delete
                      </Button>
                    )}
                  </ButtonGroup>
                </InlineStack>
                <ActionError error={error} />
                <Text as="p" tone="subdued">
                  {c.channel} · trigger {JSON.stringify(c.trigger)} · audience {JSON.stringify(c.audience)} · holdout{" "}
                  {pct(c.holdout ?? 0)} · caps {JSON.stringify(c.caps ?? {})} · version {c.version} · updated {when(c.updated_at)}
                </Text>
                <div data-testid="audience-size">
                <Text as="p">
                  Audience:{" "}
                  {audience.error
                    ? `could not be estimated (${audience.error.message})`
                    : audience.data
                      ? audienceText(audience.data)
                      : "estimating…"}
                </Text>
                </div>
              </BlockStack>
            )}
          </Loading>
        </BlockStack>
      </Card>
      <Card>
        <BlockStack gap="200">
          <Text as="h2" variant="headingMd">Message preview</Text>
          <PreviewForm campaignId={id} />
        </BlockStack>
      </Card>
      <Card>
        <BlockStack gap="200">
          <Text as="h2" variant="headingMd">Performance</Text>
          <LoadError error={perf.error} />
          <Loading loading={perf.loading && !perf.data}>{perf.data && <PerformanceView perf={perf.data} />}</Loading>
        </BlockStack>
      </Card>
    </BlockStack>
  );
}

export function Campaigns({ route }: PageProps) {
  const [status, setStatus] = useState("");
  const list = useApi(() => extra.campaigns.list(status || undefined), [status]);
  const selected = route.params.get("id");
  const creating = route.params.get("new") === "1";
  return (
    <Page title="Campaigns" subtitle="Triggered messages: audience, preview, lifecycle and lift against the holdout" fullWidth
      primaryAction={{ content: "New campaign", onAction: () => navigate(PATH, { new: "1" }) }}>
      <Layout>
        <Layout.Section variant="oneThird">
          <Card>
            <BlockStack gap="200">
              <Select label="Status" value={status} onChange={setStatus}
                options={[{ label: "all", value: "" }, ...CAMPAIGN_STATUSES.map((s) => ({ label: s, value: s }))]} />
              <LoadError error={list.error} />
              <Loading loading={list.loading && !list.data}>
                {(list.data?.campaigns ?? []).length === 0 ? (
                  <Text as="p" tone="subdued">No campaigns.</Text>
                ) : (
                  <table className="aura-table" data-testid="campaign-list">
                    <tbody>
                      {(list.data?.campaigns ?? []).map((c) => (
                        <tr key={c.id}>
                          <td><a href={`#${PATH}?id=${encodeURIComponent(c.id)}`}>{c.name ?? c.id}</a>{c.id === selected && " ←"}</td>
                          <td>{c.channel}</td>
                          <td><StatusBadge status={c.status} /></td>
                        </tr>
                      ))}
                    </tbody>
                  </table>
                )}
              </Loading>
            </BlockStack>
          </Card>
        </Layout.Section>
        <Layout.Section>
          {creating ? (
            <Card>
              <BlockStack gap="300">
                <Text as="h2" variant="headingMd">New campaign</Text>
                <CampaignForm onCreated={(id) => {
                  list.reload();
                  navigate(PATH, { id });
                }} />
              </BlockStack>
            </Card>
          ) : selected ? (
            <CampaignPanel key={selected} id={selected} onChanged={list.reload} />
          ) : (
            <Card><Text as="p" tone="subdued">Pick a campaign, or create one.</Text></Card>
          )}
        </Layout.Section>
      </Layout>
    </Page>
  );
}
