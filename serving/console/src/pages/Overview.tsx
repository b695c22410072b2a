// Overview: live events per second, active users, funnel and revenue, refreshed every few seconds
// from /v1/analytics; stream health (consumer lag per worker group from /v1/stats/lag, intake
// outcomes, dead letters per reason, breakers from /v1/stats), both admin routes.
import { Badge, BlockStack, Card, InlineStack, Layout, Page, Text } from "@shopify/polaris";
import { api } from "../api";
import { CountTable, LoadError, Panel, msAgo } from "../components/common";
import { TimeSeriesChart } from "../components/TimeSeriesChart";
import { usePoll } from "../hooks";

export const REFRESH_MS = 5000;
const MINUTE = 60_000;

/** Events per second over the last `minutes` complete minutes (the current one is still filling). */
export function eventsPerSecond(series: { start: number; events: number }[], now = Date.now(), minutes = 5): number | null {
  const done = series.filter((b) => b.start + MINUTE <= now && b.start + (minutes + 1) * MINUTE > now);
  if (done.length === 0) return null;
  return done.reduce((sum, b) => sum + b.events, 0) / (minutes * 60);
}

/** The start of the newest minute that counted any event: how fresh the stream's counters are. */
export function newestCounted(series: { start: number; events: number }[]): number | null {
  for (let i = series.length - 1; i >= 0; i--) if (series[i].events > 0) return series[i].start;
  return null;
}

function Kpi({ label, value, hint }: { label: string; value: string; hint?: string }) {
  return (
    <Card>
      <BlockStack gap="100">
        <Text as="h3" variant="headingSm" tone="subdued">
          {label}
        </Text>
        <Text as="p" variant="heading2xl" id={`kpi-${label.toLowerCase().replace(/[^a-z]+/g, "-")}`}>
          {value}
        </Text>
        {hint && (
          <Text as="p" variant="bodySm" tone="subdued">
            {hint}
          </Text>
        )}
      </BlockStack>
    </Card>
  );
}

export function Overview() {
  const live = usePoll(() => api.analytics.engagement({ grain: "minute", timeframe: "30m" }), REFRESH_MS);
  const day = usePoll(() => api.analytics.engagement({ grain: "hour", timeframe: "24h" }), REFRESH_MS * 3);
  const funnel = usePoll(() => api.analytics.funnel({ timeframe: "24h" }), REFRESH_MS * 2);
  const revenue = usePoll(() => api.analytics.revenue({ grain: "hour", timeframe: "24h" }), REFRESH_MS * 2);
  const stats = usePoll(() => api.stats(), REFRESH_MS);
  const lag = usePoll(() => api.lag(), REFRESH_MS);

  const perMinute = live.data?.series ?? [];
  const eps = eventsPerSecond(perMinute);
  const newest = newestCounted(perMinute);
  const rateSeries = perMinute.map((b) => ({ start: b.start, eps: b.events / 60, active: b.active_users }));

  return (
    <Page title="Overview" subtitle={live.at ? `Live · updated ${msAgo(live.at)}` : "Live"} fullWidth>
      <BlockStack gap="400">
        <LoadError error={live.error} title="Live engagement could not be read" />
        <div className="aura-grid" data-testid="overview-kpis">
          <Kpi label="Events per second" value={eps === null ? "–" : eps.toFixed(2)} hint="last 5 complete minutes" />
          <Kpi label="Active users" value={(live.data?.active_users ?? 0).toLocaleString()} hint="last 30 minutes" />
          <Kpi label="Revenue" value={revenue.data ? revenue.data.revenue.toFixed(2) : "–"} hint="last 24 hours" />
          <Kpi label="Orders" value={revenue.data ? String(revenue.data.orders) : "–"} hint="last 24 hours" />
        </div>
        <Layout>
          <Layout.Section variant="oneHalf">
            <Panel title="Events per second (per minute, 30 min)" loading={live.loading && !live.data}>
              <TimeSeriesChart
                title="events per second"
                data={rateSeries}
                series={[{ key: "eps", label: "events/s" }]}
              />
            </Panel>
          </Layout.Section>
          <Layout.Section variant="oneHalf">
            <Panel title="Engagement (hourly, 24 h)" error={day.error} loading={day.loading && !day.data}>
              <TimeSeriesChart
                title="engagement"
                data={day.data?.series ?? []}
                series={[
                  { key: "active_users", label: "active users" },
                  { key: "events", label: "events" },
                ]}
              />
            </Panel>
          </Layout.Section>
          <Layout.Section variant="oneHalf">
            <Panel title="Revenue (hourly, 24 h)" error={revenue.error} loading={revenue.loading && !revenue.data}>
              <TimeSeriesChart
                title="revenue"
                data={revenue.data?.series ?? []}
                series={[
                  { key: "revenue", label: "revenue" },
                  { key: "orders", label: "orders" },
                ]}
              />
              {revenue.data && (
                <Text as="p" tone="subdued">
                  Average order value:{" "}
                  {revenue.data.average_order_value === null ? "–" : revenue.data.average_order_value.toFixed(2)}
                </Text>
              )}
            </Panel>
          </Layout.Section>
          <Layout.Section variant="oneHalf">
            <Panel title="Funnel (24 h)" error={funnel.error} loading={funnel.loading && !funnel.data}>
              <table className="aura-table" data-testid="funnel">
                <thead>
                  <tr>
                    <th>Step</th>
                    <th className="num">Events</th>
                    <th className="num">Users</th>
                    <th className="num">From previous</th>
                  </tr>
                </thead>
                <tbody>
                  {(funnel.data?.steps ?? []).map((s) => (
                    <tr key={s.name}>
                      <td>{s.name}</td>
                      <td className="num">{s.events.toLocaleString()}</td>
                      <td className="num">{s.users ?? "–"}</td>
                      <td className="num">
                        {s.conversion_from_previous == null
                          ? "–"
                          : `${(s.conversion_from_previous * 100).toFixed(1)}%`}
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </Panel>
          </Layout.Section>
          <Layout.Section>
            <Card>
              <BlockStack gap="300">
                <InlineStack gap="200" align="space-between">
                  <Text as="h2" variant="headingMd">
                    Stream health
                  </Text>
                  {stats.data?.counters_stale && <Badge tone="warning">counters stale (Redis unreachable)</Badge>}
                </InlineStack>
                <Text as="p" tone="subdued" id="stream-freshness">
                  Newest counted minute: {newest ? `${new Date(newest).toLocaleTimeString()} (${msAgo(newest)})` : "none in the last 30 minutes"}
                </Text>
                <LoadError error={stats.error} title="Stream counters need an admin key (/v1/stats)" />
                <LoadError error={lag.error} title="Consumer lag (/v1/stats/lag)" />
                {lag.data && (
                  <div>
                    <Text as="h3" variant="headingSm">
                      Consumer lag (messages behind, from Kafka)
                    </Text>
                    {lag.data.groups.length === 0 ? (
                      <Text as="p" tone="subdued">
                        No worker group has committed offsets yet.
                      </Text>
                    ) : (
                      <table className="aura-table" data-testid="lag">
                        <tbody>
                          {lag.data.groups.flatMap((g) =>
                            Object.entries(g.topics)
                              .sort((a, b) => b[1].lag - a[1].lag)
                              .map(([t, v]) => (
                                <tr key={`${g.group}/${t}`}>
                                  <td>{g.group}</td>
                                  <td>{t}</td>
                                  <td className="num">
                                    <Badge tone={v.lag === 0 ? "success" : v.lag < 10_000 ? "attention" : "critical"}>
                                      {v.lag.toLocaleString()}
                                    </Badge>
                                  </td>
                                </tr>
                              )),
                          )}
                        </tbody>
                      </table>
                    )}
                  </div>
                )}
                {stats.data && (
                  <div className="aura-grid">
                    <div>
                      <Text as="h3" variant="headingSm">
                        Intake
                      </Text>
                      <CountTable counts={stats.data.intake} testid="intake" />
                    </div>
                    <div>
                      <Text as="h3" variant="headingSm">
                        Dead letters by reason
                      </Text>
                      {Object.keys(stats.data.deadletters).length === 0 ? (
                        <Text as="p" tone="subdued">
                          None.
                        </Text>
                      ) : (
                        <CountTable counts={stats.data.deadletters} sorted testid="deadletters" />
                      )}
                    </div>
                    <div>
                      <Text as="h3" variant="headingSm">
                        Breakers
                      </Text>
                      <table className="aura-table">
                        <tbody>
                          {Object.entries(stats.data.breakers).map(([k, b]) => (
                            <tr key={k}>
                              <td>{k}</td>
                              <td>
                                <Badge tone={b.state === "closed" ? "success" : "critical"}>{b.state}</Badge>
                              </td>
                              <td className="num">opened {b.opened_total}×</td>
                            </tr>
                          ))}
                        </tbody>
                      </table>
                    </div>
                  </div>
                )}
              </BlockStack>
            </Card>
          </Layout.Section>
        </Layout>
      </BlockStack>
    </Page>
  );
}
