// Profiles: find a user (by id, or from the most recently active profiles), then everything the
// platform knows about them: profile and attributes, affinities, segments with the rule that put
// them there, engagement and lifecycle, recent activity, and their recommendations per placement
// with the source of each item.
import { Badge, BlockStack, Button, Card, Form, InlineStack, Layout, Page, Select, Text, TextField } from "@shopify/polaris";
import { useEffect, useState } from "react";
import { api, type Segment } from "../api";
import { KeyValues, LoadError, Loading, msAgo, Panel } from "../components/common";
import { ItemList } from "../components/ItemList";
import { useApi, usePoll } from "../hooks";
import { navigate } from "../router";
import type { PageProps } from "./types";

export const MAX_PLACEMENTS = 6;

/** The placements to preview for a user: default first, then those with an active model version. */
export function placementsOf(models: Record<string, unknown> | undefined): string[] {
  const others = Object.keys(models ?? {}).filter((p) => p !== "default").sort();
  return ["default", ...others].slice(0, MAX_PLACEMENTS);
}

function RecentProfiles() {
  const [segment, setSegment] = useState("");
  const segments = useApi(() => api.segments.list(), []);
  const recent = usePoll(() => api.profiles.list({ limit: 20, segment: segment || undefined }), 10_000, [segment]);
  return (
    <Card>
      <BlockStack gap="200">
        <InlineStack align="space-between" blockAlign="end">
          <Text as="h2" variant="headingMd">
            Profiles
          </Text>
          <Select
            label="Segment"
            labelInline
            options={[{ label: "all", value: "" }, ...(segments.data?.segments ?? []).map((s) => ({ label: `${s.name} (${s.members})`, value: s.name }))]}
            value={segment}
            onChange={setSegment}
          />
        </InlineStack>
        <LoadError error={recent.error} />
        <Loading loading={recent.loading && !recent.data}>
          <div className="aura-scroll">
            <table className="aura-table" data-testid="profile-list">
              <thead>
                <tr>
                  <th>User</th>
                  <th>Lifecycle</th>
                  <th className="num">Engagement</th>
                  <th>Segments</th>
                  <th>Last seen</th>
                </tr>
              </thead>
              <tbody>
                {(recent.data?.profiles ?? []).map((p) => (
                  <tr key={p.user_id}>
                    <td>
                      <a href={`#/profiles?user=${encodeURIComponent(p.user_id)}`}>{p.user_id}</a>
                    </td>
                    <td>{p.lifecycle}</td>
                    <td className="num">{p.engagement.toFixed(1)}</td>
                    <td>{p.segments.join(", ") || "–"}</td>
                    <td>{msAgo(p.last_seen)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </Loading>
      </BlockStack>
    </Card>
  );
}

function PlacementRecs({ userId, placement }: { userId: string; placement: string }) {
  const recs = useApi(() => api.recs.forUser(userId, { placement, limit: 10 }), [userId, placement]);
  return (
    <Card>
      <BlockStack gap="200">
        <InlineStack align="space-between">
          <Text as="h3" variant="headingSm">
            Placement {placement}
          </Text>
          {recs.data && <Badge>{`${recs.data.method} · ${recs.data.strategy}`}</Badge>}
        </InlineStack>
        <LoadError error={recs.error} />
        <Loading loading={recs.loading}>
          <ItemList items={recs.data?.items ?? []} testId={`recs-${placement}`} />
        </Loading>
      </BlockStack>
    </Card>
  );
}

function UserDetail({ userId }: { userId: string }) {
  const profile = usePoll(() => api.profiles.get(userId), 10_000, [userId]);
  const activity = usePoll(() => api.profiles.activity(userId), 10_000, [userId]);
  const segments = useApi(() => api.segments.list(), []);
  const models = useApi(() => api.models.list(), []);
  const rules = new Map<string, Segment>((segments.data?.segments ?? []).map((s) => [s.name, s]));
  const p = profile.data;
  const affinities = Object.entries(p?.affinities ?? {}).sort((a, b) => b[1] - a[1]);

  return (
    <BlockStack gap="400">
      <LoadError error={profile.error} title={`No profile for ${userId}`} />
      {p && (
        <Layout>
          <Layout.Section variant="oneThird">
            <Panel title="Profile">
              <InlineStack gap="200">
                <Badge tone={p.lifecycle === "churned" || p.lifecycle === "at-risk" ? "warning" : "success"}>
                  {p.lifecycle}
                </Badge>
                <Badge>{`engagement ${p.engagement.toFixed(1)} / 100`}</Badge>
              </InlineStack>
              <KeyValues
                data={{
                  sessions: p.sessions,
                  orders: p.orders,
                  lifetime_value: p.lifetime_value,
                  first_seen: p.first_seen ? new Date(p.first_seen).toLocaleString() : null,
                  last_seen: p.last_seen ? `${new Date(p.last_seen).toLocaleString()} (${msAgo(p.last_seen)})` : null,
                  lifecycle_at_last_event: p.lifecycle_at_last_event,
                  source: p.source,
                }}
              />
              <Text as="h3" variant="headingSm">
                Attributes
              </Text>
              <KeyValues data={{ ...p.attributes, ...p.preferences }} />
            </Panel>
          </Layout.Section>
          <Layout.Section variant="oneThird">
            <Card>
              <BlockStack gap="200">
                <Text as="h2" variant="headingMd">
                  Segments
                </Text>
                {p.segments.length === 0 && (
                  <Text as="p" tone="subdued">
                    In no segment.
                  </Text>
                )}
                <ul className="aura-plain" data-testid="user-segments">
                  {p.segments.map((s) => (
                    <li key={s}>
                      <Badge tone="info">{s}</Badge>{" "}
                      <code>{rules.has(s) ? JSON.stringify(rules.get(s)!.rule) : "rule not in force any more"}</code>
                    </li>
                  ))}
                </ul>
                <Text as="h2" variant="headingMd">
                  Affinities
                </Text>
                <table className="aura-table" data-testid="affinities">
                  <tbody>
                    {affinities.slice(0, 15).map(([k, v]) => (
                      <tr key={k}>
                        <td>{k}</td>
                        <td className="num">{v.toFixed(3)}</td>
                      </tr>
                    ))}
                  </tbody>
                </table>
                {affinities.length === 0 && (
                  <Text as="p" tone="subdued">
                    None yet.
                  </Text>
                )}
              </BlockStack>
            </Card>
          </Layout.Section>
          <Layout.Section variant="oneThird">
            <Panel title="Recent activity" error={activity.error}>
              {activity.data && (
                <>
                  <KeyValues data={activity.data.counts} />
                  <Text as="h3" variant="headingSm">
                    Recent items (newest first)
                  </Text>
                  <Text as="p" id="recent-items">
                    {activity.data.recent_items.slice(0, 20).map((i, n) => (
                      <span key={`${i}-${n}`}>
                        {n > 0 && ", "}
                        <a href={`#/recommendations?item=${encodeURIComponent(i)}`}>{i}</a>
                      </span>
                    ))}
                    {activity.data.recent_items.length === 0 && "–"}
                  </Text>
                </>
              )}
            </Panel>
          </Layout.Section>
        </Layout>
      )}
      {p && (
        <BlockStack gap="200">
          <Text as="h2" variant="headingLg">
            Recommendations per placement
          </Text>
          {Object.keys(models.data?.placements ?? {}).length >= MAX_PLACEMENTS && (
            <Text as="p" tone="subdued">
              The first {MAX_PLACEMENTS} placements; preview any other in{" "}
              <a href="#/recommendations">Recommendations</a>.
            </Text>
          )}
          <div className="aura-grid">
            {placementsOf(models.data?.placements).map((pl) => (
              <PlacementRecs key={pl} userId={userId} placement={pl} />
            ))}
          </div>
        </BlockStack>
      )}
    </BlockStack>
  );
}

export function Profiles({ route }: PageProps) {
  const userId = route.params.get("user") ?? "";
  const [query, setQuery] = useState(userId);
  const [error, setError] = useState<string>();
  useEffect(() => setQuery(userId), [userId]);
  const submit = () => {
    const id = query.trim();
    if (!id) return setError("Enter a user id");
    if (id.length > 256) return setError("At most 256 characters");
    setError(undefined);
    navigate("/profiles", { user: id });
  };
  return (
    <Page title="Profiles" subtitle={userId ? `User ${userId}` : "Find a user"} fullWidth>
      <BlockStack gap="400">
        <Card>
          <Form onSubmit={submit}>
            <InlineStack gap="200" blockAlign="end">
              <div style={{ flex: 1, minWidth: 200 }}>
                <TextField
                  label="User id"
                  value={query}
                  onChange={setQuery}
                  autoComplete="off"
                  error={error}
                  placeholder="u42"
                />
              </div>
              <Button submit variant="primary">
                Look up
              </Button>
              {userId && <Button onClick={() => navigate("/profiles")}>All profiles</Button>}
            </InlineStack>
          </Form>
        </Card>
        {userId ? <UserDetail key={userId} userId={userId} /> : <RecentProfiles />}
      </BlockStack>
    </Page>
  );
}
