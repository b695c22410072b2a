// Analytics: attribution of revenue to recommendation clicks (per placement and experiment
// variant), the top session journeys, per-item statistics, and the insights the stream found
// (GET /v1/analytics/insights: anomalies, level shifts and trends, each explained in a sentence),
// each over a timeframe the operator picks.
import { Badge, BlockStack, Button, Card, Form, InlineStack, Layout, Page, Select, Text, TextField } from "@shopify/polaris";
import { useState } from "react";
import { api } from "../../api";
import { extra, type Insight } from "../../api/extra";
import { TimeSeriesChart } from "../../components/TimeSeriesChart";
import { LoadError, Loading, fmtValue } from "../../components/common";
import { usePoll } from "../../hooks";
import { ApiError } from "../../api";
import { ActionError, pct, when } from "../forms";

const TIMEFRAMES = ["1h", "6h", "24h", "7d", "30d"];
const REFRESH_MS = 15_000;
/** the bucket size that gives a readable chart of a timeframe */
const GRAIN: Record<string, "minute" | "hour" | "day"> = { "1h": "minute", "6h": "minute", "24h": "hour", "7d": "hour", "30d": "day" };

function Timeframe({ value, onChange }: { value: string; onChange: (v: string) => void }) {
  return <Select label="Timeframe" labelInline value={value} onChange={onChange} options={TIMEFRAMES.map((t) => ({ label: `last ${t}`, value: t }))} />;
}

const money = (v: number | null | undefined) => (v === null || v === undefined ? "–" : v.toFixed(2));

export function AttributionPage() {
  const [tf, setTf] = useState("24h");
  const a = usePoll(() => extra.analytics.attribution({ timeframe: tf }), REFRESH_MS, [tf]);
  const d = a.data;
  return (
    <Page title="Attribution" subtitle="Purchases that followed a recommendation click within the attribution window" fullWidth
      secondaryActions={<Timeframe value={tf} onChange={setTf} />}>
      <BlockStack gap="400">
        <LoadError error={a.error} />
        <Loading loading={a.loading && !d}>
          {d && (
            <Layout>
              <Layout.Section variant="oneThird">
                <Card>
                  <BlockStack gap="100">
                    <Text as="p" variant="heading2xl" id="attributed-share">{pct(d.total_revenue ? d.attributed_revenue / d.total_revenue : null)}</Text>
                    <Text as="p" tone="subdued">of revenue attributed ({money(d.attributed_revenue)} of {money(d.total_revenue)}; {d.attributed_orders} orders; window {Math.round(d.window_s / 3600)} h)</Text>
                  </BlockStack>
                </Card>
              </Layout.Section>
              <Layout.Section variant="oneThird">
                <Card>
                  <BlockStack gap="200">
                    <Text as="h2" variant="headingMd">By placement</Text>
                    <table className="aura-table" data-testid="attribution-placements">
                      <tbody>
                        {Object.entries(d.by_placement).sort((x, y) => y[1] - x[1]).map(([p, r]) => (
                          <tr key={p}><td>{p}</td><td className="num">{money(r)}</td></tr>
                        ))}
                      </tbody>
                    </table>
                    {Object.keys(d.by_placement).length === 0 && <Text as="p" tone="subdued">No attributed purchase in this window.</Text>}
                  </BlockStack>
                </Card>
              </Layout.Section>
              <Layout.Section>
                <Card>
                  <BlockStack gap="200">
                    <Text as="h2" variant="headingMd">By experiment variant</Text>
                    <div className="aura-scroll">
                      <table className="aura-table">
                        <thead><tr><th>Experiment</th><th>Variant</th><th className="num">Impressions</th><th className="num">Rec. clicks</th><th className="num">Orders</th><th className="num">Revenue</th></tr></thead>
                        <tbody>
                          {d.by_variant.map((v) => (
                            <tr key={`${v.experiment_id}/${v.variant_id}`}>
                              <td>{v.experiment_id}</td><td>{v.variant_id}</td><td className="num">{v.impressions}</td>
                              <td className="num">{v.recommendation_clicks}</td><td className="num">{v.orders}</td><td className="num">{money(v.revenue)}</td>
                            </tr>
                          ))}
                        </tbody>
                      </table>
                    </div>
                    {d.by_variant.length === 0 && <Text as="p" tone="subdued">No experiment exposures in this window.</Text>}
                  </BlockStack>
                </Card>
              </Layout.Section>
            </Layout>
          )}
        </Loading>
      </BlockStack>
    </Page>
  );
}

// Journeys are counted per session start day; the grain is given explicitly (without it the route
// rebuilds its window and refuses the timeframe, a server bug reported with this page).
export function JourneysPage() {
  const [tf, setTf] = useState("24h");
  const j = usePoll(() => extra.analytics.journeys({ timeframe: tf, grain: "day", limit: 20 }), REFRESH_MS, [tf]);
  const top = Math.max(1, ...(j.data?.journeys ?? []).map((x) => x.sessions));
  return (
    <Page title="Journeys" subtitle="The most common session paths (page and placement steps)" fullWidth
      secondaryActions={<Timeframe value={tf} onChange={setTf} />}>
      <Card>
        <BlockStack gap="200">
          <LoadError error={j.error} />
          <Loading loading={j.loading && !j.data}>
            {(j.data?.journeys ?? []).length === 0 ? (
              <Text as="p" tone="subdued">No sessions recorded in this window.</Text>
            ) : (
              <table className="aura-table" data-testid="journeys">
                <thead><tr><th>Path</th><th className="num">Sessions</th><th /></tr></thead>
                <tbody>
                  {(j.data?.journeys ?? []).map((x) => (
                    <tr key={x.path.join(">")}>
                      <td>{x.path.join(" → ")}</td>
                      <td className="num">{x.sessions}</td>
                      <td style={{ width: "30%" }}>
                        <div style={{ width: `${(x.sessions / top) * 100}%`, background: "#2c6ecb", height: 8, borderRadius: 4 }} />
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
          </Loading>
        </BlockStack>
      </Card>
    </Page>
  );
}

export function ItemStatsPage() {
  const [tf, setTf] = useState("24h");
  const [item, setItem] = useState("");
  const [query, setQuery] = useState("");
  const s = usePoll(() => extra.analytics.items({ timeframe: tf, limit: 50, item_id: query || undefined }), REFRESH_MS, [tf, query]);
  return (
    <Page title="Item statistics" subtitle="Views, recommendation impressions and clicks, carts and purchases per item" fullWidth
      secondaryActions={<Timeframe value={tf} onChange={setTf} />}>
      <Card>
        <BlockStack gap="200">
          <Form onSubmit={() => setQuery(item.trim())}>
            <InlineStack gap="200" blockAlign="end">
              <TextField label="Item id (empty: top items)" value={item} onChange={setItem} autoComplete="off" />
              <Button submit>Show</Button>
            </InlineStack>
          </Form>
          <LoadError error={s.error} />
          <Loading loading={s.loading && !s.data}>
            {(s.data?.items ?? []).length === 0 ? (
              <Text as="p" tone="subdued">No item activity in this window.</Text>
            ) : (
              <div className="aura-scroll">
                <table className="aura-table" data-testid="item-stats">
                  <thead><tr><th>Item</th><th className="num">Views</th><th className="num">Impressions</th><th className="num">Clicks</th><th className="num">CTR</th><th className="num">Carts</th><th className="num">Units</th><th className="num">Revenue</th></tr></thead>
                  <tbody>
                    {(s.data?.items ?? []).map((x) => (
                      <tr key={x.item_id}>
                        <td><a href={`#/content?id=${encodeURIComponent(x.item_id)}`}>{x.item_id}</a></td>
                        <td className="num">{fmtValue(x.views)}</td><td className="num">{fmtValue(x.impressions)}</td>
                        <td className="num">{fmtValue(x.clicks)}</td><td className="num">{pct(x.ctr, 2)}</td>
                        <td className="num">{fmtValue(x.add_to_carts)}</td><td className="num">{fmtValue(x.units)}</td><td className="num">{money(x.revenue)}</td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
            )}
          </Loading>
        </BlockStack>
      </Card>
    </Page>
  );
}

const SEVERITY_TONE = { info: "info", warning: "attention", critical: "critical" } as const;

export function InsightCard({ insight }: { insight: Insight }) {
  return (
    <Card>
      <BlockStack gap="100">
        <InlineStack gap="200" blockAlign="center">
          <Badge tone={SEVERITY_TONE[insight.severity]}>{insight.severity}</Badge>
          <Badge>{insight.kind.replace(/_/g, " ")}</Badge>
          <Text as="span" tone="subdued">{insight.metric} · {insight.status} · since {when(insight.started_at)}</Text>
        </InlineStack>
        <Text as="p" variant="bodyLg">{insight.text}</Text>
        {(insight.causes ?? []).length > 0 && (
          <Text as="p" tone="subdued">
            Where: {(insight.causes ?? []).map((c) => `${c.dimension} ${c.value} (${pct(c.share, 0)})`).join(", ")}
          </Text>
        )}
      </BlockStack>
    </Card>
  );
}

/** The series the insight engine watches (engagement and revenue), so a change it reports can be seen. */
function WatchedMetrics({ timeframe }: { timeframe: string }) {
  const grain = GRAIN[timeframe] ?? "hour";
  const eng = usePoll(() => api.analytics.engagement({ timeframe, grain }), REFRESH_MS, [timeframe]);
  const rev = usePoll(() => api.analytics.revenue({ timeframe, grain }), REFRESH_MS, [timeframe]);
  return (
    <Card>
      <BlockStack gap="200">
        <Text as="h2" variant="headingMd">The metrics it watches (per {grain})</Text>
        <LoadError error={eng.error ?? rev.error} />
        <div className="aura-grid">
          <TimeSeriesChart title="events and active users" data={eng.data?.series ?? []} height={140}
            series={[{ key: "events", label: "events" }, { key: "active_users", label: "active users" }]} />
          <TimeSeriesChart title="revenue and orders" data={rev.data?.series ?? []} height={140}
            series={[{ key: "revenue", label: "revenue" }, { key: "orders", label: "orders" }]} />
        </div>
      </BlockStack>
    </Card>
  );
}

export function InsightsPage() {
  const [tf, setTf] = useState("24h");
  const [severity, setSeverity] = useState("");
  const [status, setStatus] = useState("");
  const ins = usePoll(() => extra.analytics.insights({ timeframe: tf, severity: severity || undefined, status: status || undefined }),
    REFRESH_MS, [tf, severity, status]);
  const [run, setRun] = useState<string | null>(null);
  const [runError, setRunError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);
  const detect = async () => {
    setBusy(true);
    setRunError(null);
    try {
      const r = await extra.analytics.detect({ timeframe: tf, ...(severity ? { severity } : {}) });
      setRun(`Analysed ${r.analysed.minutes_with_data} minutes with data: ${r.detected.length} insight(s) found.`);
      ins.reload();
    } catch (exc) {
      setRunError(exc instanceof ApiError ? exc : new ApiError(0, String(exc)));
    } finally {
      setBusy(false);
    }
  };
  return (
    <Page title="Insights" subtitle="What changed, found by the stream and explained" fullWidth>
      <BlockStack gap="400">
        <InlineStack gap="400">
          <Timeframe value={tf} onChange={setTf} />
          <Select label="Severity" labelInline value={severity} onChange={setSeverity}
            options={[{ label: "any", value: "" }, { label: "warning and up", value: "warning" }, { label: "critical", value: "critical" }]} />
          <Select label="Status" labelInline value={status} onChange={setStatus}
            options={[{ label: "any", value: "" }, { label: "open", value: "open" }, { label: "closed", value: "closed" }]} />
          <Button onClick={detect} loading={busy}>Detect now</Button>
          {run && <Text as="span" tone="subdued">{run}</Text>}
        </InlineStack>
        <ActionError error={runError} />
        <LoadError error={ins.error} />
        <WatchedMetrics timeframe={tf} />
        <Loading loading={ins.loading && !ins.data}>
          <div data-testid="insights">
            {(ins.data?.insights ?? []).length === 0 ? (
              <Card><Text as="p" tone="subdued">No insight in this window: nothing moved beyond its usual range.</Text></Card>
            ) : (
              <BlockStack gap="300">
                {(ins.data?.insights ?? []).map((i) => <InsightCard key={`${i.insight_id}-${i.revision ?? ""}`} insight={i} />)}
              </BlockStack>
            )}
          </div>
        </Loading>
      </BlockStack>
    </Page>
  );
}
