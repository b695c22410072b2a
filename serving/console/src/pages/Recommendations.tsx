// Recommendations: preview any placement for any user (or an anonymous visitor), similar and
// also-bought for an item, trending globally or by category, and the model weights per placement.
import { BlockStack, Button, Card, Form, FormLayout, InlineStack, Layout, Page, Select, Text, TextField } from "@shopify/polaris";
import { useState } from "react";
import { ApiError, api, type Recommendations as Recs } from "../api";
import { LoadError, Loading, Panel } from "../components/common";
import { ItemList } from "../components/ItemList";
import { errorFor } from "../forms";
import { useApi, usePoll } from "../hooks";
import { navigate } from "../router";
import type { PageProps } from "./types";

const METHODS = ["", "hybrid", "collaborative", "content", "trending", "popular", "auto"];

function Preview() {
  const [user, setUser] = useState("");
  const [placement, setPlacement] = useState("default");
  const [method, setMethod] = useState("");
  const [limit, setLimit] = useState("10");
  const [context, setContext] = useState("");
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [result, setResult] = useState<Recs>();
  const [failure, setFailure] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async () => {
    const e: Record<string, string> = {};
    const n = Number(limit);
    if (!Number.isInteger(n) || n < 1 || n > 200) e.limit = "an integer from 1 to 200";
    if (!placement.trim()) e["context.placement"] = "required";
    setErrors(e);
    if (Object.keys(e).length) return;
    setBusy(true);
    setFailure(null);
    try {
      const body: Record<string, unknown> = {
        limit: n,
        context: { placement: placement.trim(), ...(context.trim() ? { item_id: context.trim() } : {}) },
      };
      if (user.trim()) body.user_id = user.trim();
      if (method) body.method = method;
      setResult(await api.recs.generate(body));
    } catch (exc) {
      if (exc instanceof ApiError) {
        setErrors(exc.fields);
        setFailure(exc);
      }
    } finally {
      setBusy(false);
    }
  };

  return (
    <Panel title="Preview a placement" gap="300">
      <Form onSubmit={submit}>
        <FormLayout>
          <FormLayout.Group condensed>
            <TextField label="User id" value={user} onChange={setUser} autoComplete="off" helpText="empty: anonymous" error={errorFor(errors, "user_id")} />
            <TextField label="Placement" value={placement} onChange={setPlacement} autoComplete="off" error={errorFor(errors, "context.placement")} />
            <Select label="Method" options={METHODS.map((m) => ({ label: m || "placement's strategy", value: m }))} value={method} onChange={setMethod} />
            <TextField label="Limit" type="number" value={limit} onChange={setLimit} autoComplete="off" error={errorFor(errors, "limit")} />
            <TextField label="Item on screen" value={context} onChange={setContext} autoComplete="off" error={errorFor(errors, "context.item_id")} />
          </FormLayout.Group>
          <Button submit variant="primary" loading={busy}>
            Preview
          </Button>
        </FormLayout>
      </Form>
      {failure && <LoadError error={failure} title="The API refused the preview" />}
      {result && (
        <BlockStack gap="200">
          <Text as="p" tone="subdued" id="preview-meta">
            {result.user_id ?? "anonymous"} · placement {result.placement} · method {result.method} · strategy{" "}
            {result.strategy}
            {result.decision ? ` · bandit ${result.decision.bandit_id} chose ${result.decision.arm}` : ""}
          </Text>
          <ItemList items={result.items} testId="preview-items" />
        </BlockStack>
      )}
    </Panel>
  );
}

function ItemNeighbours({ itemId }: { itemId: string }) {
  const similar = useApi(() => api.recs.similar(itemId, { limit: 10 }), [itemId]);
  const bought = useApi(() => api.recs.alsoBought(itemId, { limit: 10 }), [itemId]);
  return (
    <div className="aura-grid">
      <BlockStack gap="200">
        <Text as="h3" variant="headingSm">
          Similar to {itemId}
        </Text>
        <LoadError error={similar.error} />
        <Loading loading={similar.loading}>
          <ItemList items={similar.data?.items ?? []} testId="similar-items" />
        </Loading>
      </BlockStack>
      <BlockStack gap="200">
        <Text as="h3" variant="headingSm">
          Also bought with {itemId}
        </Text>
        <LoadError error={bought.error} />
        <Loading loading={bought.loading}>
          <ItemList items={bought.data?.items ?? []} testId="also-bought-items" />
        </Loading>
      </BlockStack>
    </div>
  );
}

function Items({ itemId }: { itemId: string }) {
  const [value, setValue] = useState(itemId);
  return (
    <Panel title="Item neighbours" gap="300">
      <Form onSubmit={() => value.trim() && navigate("/recommendations", { item: value.trim() })}>
        <InlineStack gap="200" blockAlign="end">
          <div style={{ flex: 1, minWidth: 160 }}>
            <TextField label="Item id" value={value} onChange={setValue} autoComplete="off" />
          </div>
          <Button submit>Show</Button>
        </InlineStack>
      </Form>
      {itemId ? (
        <ItemNeighbours key={itemId} itemId={itemId} />
      ) : (
        <Text as="p" tone="subdued">
          Pick an item (or click one in a list) to see its neighbours.
        </Text>
      )}
    </Panel>
  );
}

function TrendingCard() {
  const [category, setCategory] = useState("");
  const [shown, setShown] = useState("");
  const trending = usePoll(() => api.recs.trending({ limit: 15, category: shown || undefined }), 10_000, [shown]);
  return (
    <Card>
      <BlockStack gap="300">
        <Text as="h2" variant="headingMd">
          Trending{shown ? ` in ${shown}` : ""}
        </Text>
        <Form onSubmit={() => setShown(category.trim())}>
          <InlineStack gap="200" blockAlign="end">
            <div style={{ flex: 1, minWidth: 160 }}>
              <TextField label="Category" value={category} onChange={setCategory} autoComplete="off" helpText="empty: all" />
            </div>
            <Button submit>Show</Button>
          </InlineStack>
        </Form>
        <LoadError error={trending.error} />
        <Loading loading={trending.loading && !trending.data}>
          <ItemList items={trending.data?.items ?? []} testId="trending-items" />
          {trending.data && (
            <Text as="p" tone="subdued">
              Score: interaction weight decayed with a half-life of {trending.data.half_life_h} h.
            </Text>
          )}
        </Loading>
      </BlockStack>
    </Card>
  );
}

function Weights() {
  const models = useApi(() => api.models.list(), []);
  const entries = Object.entries(models.data?.placements ?? {});
  return (
    <Panel title="Placement weights" error={models.error} loading={models.loading}>
      {entries.length === 0 ? (
        <Text as="p" tone="subdued">
          No placement has an active model version: every placement uses the default hybrid weights (settings).
        </Text>
      ) : (
        <table className="aura-table" data-testid="placement-weights">
          <thead>
            <tr>
              <th>Placement</th>
              <th>Model</th>
              <th>Weights</th>
            </tr>
          </thead>
          <tbody>
            {entries.map(([pl, m]) => (
              <tr key={pl}>
                <td>{pl}</td>
                <td>
                  {m.model_id ? `${m.model_id} v${m.version}` : "–"}
                </td>
                <td>
                  {m.weights
                    ? Object.entries(m.weights)
                        .map(([k, v]) => `${k} ${v}`)
                        .join(", ")
                    : "defaults"}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Panel>
  );
}

export function Recommendations({ route }: PageProps) {
  const itemId = route.params.get("item") ?? "";
  return (
    <Page title="Recommendations" fullWidth>
      <Layout>
        <Layout.Section>
          <Preview />
        </Layout.Section>
        <Layout.Section variant="oneHalf">
          <TrendingCard />
        </Layout.Section>
        <Layout.Section variant="oneHalf">
          <BlockStack gap="400">
            <Items key={itemId} itemId={itemId} />
            <Weights />
          </BlockStack>
        </Layout.Section>
      </Layout>
    </Page>
  );
}
