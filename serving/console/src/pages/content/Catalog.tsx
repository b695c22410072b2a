// Content: the catalog (list and search by words, category, tag, availability; paged by cursor),
// an item's editor (create or replace: PUT /v1/content/{id}; delete), and its performance
// (interaction weight, trending score, neighbours by co-occurrence and by content). Writes are
// events: the API accepts them (202) and the catalog agent stores them a moment later.
import { BlockStack, Button, Card, Checkbox, Form, FormLayout, InlineStack, Layout, Page, Text, TextField } from "@shopify/polaris";
import { useEffect, useState } from "react";
import { ApiError } from "../../api";
import { extra } from "../../api/extra";
import { LoadError, Loading, fmtValue } from "../../components/common";
import { useApi } from "../../hooks";
import { navigate } from "../../router";
import { ActionError, FormFailure, fieldError, useSubmission, when } from "../forms";
import type { PageProps } from "../types";
import { EMPTY_ITEM, itemBody, valuesOf, type ItemValues } from "./itemForm";

export const PATH = "/content";

function ItemEditor({ itemId, onSaved }: { itemId: string | null; onSaved: (id: string) => void }) {
  const item = useApi(() => (itemId ? extra.content.get(itemId) : Promise.resolve(null)), [itemId]);
  const [v, setV] = useState<ItemValues>(EMPTY_ITEM);
  const [note, setNote] = useState<string | null>(null);
  const [actionError, setActionError] = useState<ApiError | null>(null);
  const sub = useSubmission();
  useEffect(() => {
    setV(item.data ? valuesOf(item.data) : { ...EMPTY_ITEM, item_id: itemId ?? "" });
    setNote(null);
  }, [item.data, itemId]);
  const set = (k: keyof ItemValues) => (value: string) => setV((cur) => ({ ...cur, [k]: value }));
  const err = (k: string) => fieldError(sub.errors, k);
  const save = async () => {
    const { body, errors } = itemBody(v);
    const done = await sub.submit(() => errors, () => extra.content.put(v.item_id.trim(), body));
    if (done) {
      setNote(`Accepted (${done.event_type}); the catalog agent stores it in a moment.`);
      onSaved(done.item_id);
    }
  };
  const remove = async () => {
    setActionError(null);
    try {
      const done = await extra.content.remove(v.item_id.trim());
      setNote(`Deletion accepted for ${done.item_id}.`);
      navigate(PATH);
    } catch (exc) {
      setActionError(exc instanceof ApiError ? exc : new ApiError(0, String(exc)));
    }
  };
  return (
    <Form onSubmit={save}>
      <FormLayout>
        <LoadError error={item.error} />
        <FormFailure sub={sub} />
        <ActionError error={actionError} />
        {note && <Text as="p" tone="success">{note}</Text>}
        <FormLayout.Group>
          <TextField label="Item id" value={v.item_id} onChange={set("item_id")} autoComplete="off" disabled={Boolean(itemId)} error={err("item_id")} />
          <TextField label="Title" value={v.title} onChange={set("title")} autoComplete="off" error={err("title")} />
        </FormLayout.Group>
        <FormLayout.Group>
          <TextField label="Categories" value={v.categories} onChange={set("categories")} autoComplete="off" error={err("categories")} helpText="comma-separated" />
          <TextField label="Tags" value={v.tags} onChange={set("tags")} autoComplete="off" error={err("tags")} />
          <TextField label="Brand" value={v.brand} onChange={set("brand")} autoComplete="off" error={err("brand")} />
        </FormLayout.Group>
        <FormLayout.Group condensed>
          <TextField label="Price" value={v.price} onChange={set("price")} autoComplete="off" error={err("price")} />
          <TextField label="Currency" value={v.currency} onChange={set("currency")} autoComplete="off" error={err("currency")} />
          <TextField label="Stock" value={v.stock} onChange={set("stock")} autoComplete="off" error={err("stock")} />
        </FormLayout.Group>
        <Checkbox label="Available" checked={v.available} onChange={(on) => setV((cur) => ({ ...cur, available: on }))} />
        <TextField label="Text" value={v.text} onChange={set("text")} autoComplete="off" multiline={3} error={err("text")} />
        <FormLayout.Group>
          <TextField label="URL" value={v.url} onChange={set("url")} autoComplete="off" error={err("url")} />
          <TextField label="Image URL" value={v.image_url} onChange={set("image_url")} autoComplete="off" error={err("image_url")} />
        </FormLayout.Group>
        <InlineStack gap="200">
          <Button submit variant="primary" loading={sub.busy}>{itemId ? "Save" : "Create"}</Button>
          {itemId && <Button tone="critical" onClick={remove}>Delete</Button>}
        </InlineStack>
        {item.data?.event_time && <Text as="p" tone="subdued">Stored version from {when(item.data.event_time)}</Text>}
      </FormLayout>
    </Form>
  );
}

function ItemPerformance({ itemId }: { itemId: string }) {
  const perf = useApi(() => extra.content.performance(itemId), [itemId]);
  const similar = useApi(() => extra.content.similar(itemId), [itemId]);
  return (
    <BlockStack gap="200">
      <LoadError error={perf.error} />
      {perf.data && (
        <table className="aura-table" data-testid="content-performance">
          <tbody>
            <tr><td>interaction weight</td><td className="num">{fmtValue(perf.data.interaction_weight)}</td></tr>
            <tr><td>trending score</td><td className="num">{fmtValue(perf.data.trending)}</td></tr>
            {Object.entries(perf.data.neighbours ?? {}).map(([k, ids]) => (
              <tr key={k}><td>neighbours ({k})</td><td>{ids.map((id) => <a key={id} href={`#${PATH}?id=${encodeURIComponent(id)}`} style={{ marginRight: 6 }}>{id}</a>)}</td></tr>
            ))}
          </tbody>
        </table>
      )}
      {similar.data && similar.data.items.length > 0 && (
        <Text as="p" tone="subdued">Similar by content: {similar.data.items.map((i) => `${i.item_id} (${i.score.toFixed(2)})`).join(", ")}</Text>
      )}
    </BlockStack>
  );
}

export function Catalog({ route }: PageProps) {
  const selected = route.params.get("id");
  const creating = route.params.get("new") === "1";
  const [words, setWords] = useState("");
  const [category, setCategory] = useState("");
  const [availableOnly, setAvailableOnly] = useState(false);
  const [query, setQuery] = useState({ q: "", category: "", available: false });
  const [cursors, setCursors] = useState<number[]>([0]);
  const cursor = cursors[cursors.length - 1];
  const list = useApi(() => extra.content.list({ q: query.q || undefined, category: query.category || undefined,
    available: query.available || undefined, cursor, limit: 25 }), [query, cursor]);
  return (
    <Page title="Content" subtitle="The catalog: search, edit, delete, performance" fullWidth
      primaryAction={{ content: "New item", url: `#${PATH}?new=1` }}>
      <Layout>
        <Layout.Section>
          <Card>
            <BlockStack gap="300">
              <Form onSubmit={() => { setQuery({ q: words.trim(), category: category.trim(), available: availableOnly }); setCursors([0]); }}>
                <InlineStack gap="200" blockAlign="end">
                  <TextField label="Search" value={words} onChange={setWords} autoComplete="off" placeholder="words in title, text, tags" />
                  <TextField label="Category" value={category} onChange={setCategory} autoComplete="off" />
                  <Checkbox label="Available only" checked={availableOnly} onChange={setAvailableOnly} />
                  <Button submit>Search</Button>
                </InlineStack>
              </Form>
              <LoadError error={list.error} />
              <Loading loading={list.loading && !list.data}>
                {(list.data?.items ?? []).length === 0 ? (
                  <Text as="p" tone="subdued">No items match.</Text>
                ) : (
                  <div className="aura-scroll">
                    <table className="aura-table" data-testid="content-list">
                      <thead><tr><th>Item</th><th>Title</th><th>Categories</th><th className="num">Price</th><th className="num">Stock</th><th>Available</th></tr></thead>
                      <tbody>
                        {(list.data?.items ?? []).map((i) => (
                          <tr key={i.item_id}>
                            <td><a href={`#${PATH}?id=${encodeURIComponent(i.item_id)}`}>{i.item_id}</a>{i.item_id === selected && " ←"}</td>
                            <td>{i.title}</td>
                            <td>{(i.categories ?? []).join(", ")}</td>
                            <td className="num">{fmtValue(i.price ?? null)}</td>
                            <td className="num">{fmtValue(i.stock ?? null)}</td>
                            <td>{i.available === false ? "no" : "yes"}</td>
                          </tr>
                        ))}
                      </tbody>
                    </table>
                  </div>
                )}
                <InlineStack gap="200">
                  <Button disabled={cursors.length <= 1} onClick={() => setCursors(cursors.slice(0, -1))}>Previous</Button>
                  <Button disabled={list.data?.next_cursor == null} onClick={() => setCursors([...cursors, list.data?.next_cursor as number])}>Next</Button>
                </InlineStack>
              </Loading>
            </BlockStack>
          </Card>
        </Layout.Section>
        <Layout.Section variant="oneThird">
          <BlockStack gap="400">
            {(selected || creating) && (
              <Card>
                <BlockStack gap="200">
                  <Text as="h2" variant="headingMd">{selected ? `Edit ${selected}` : "New item"}</Text>
                  <ItemEditor key={selected ?? "new"} itemId={selected} onSaved={(id) => { list.reload(); if (!selected) navigate(PATH, { id }); }} />
                </BlockStack>
              </Card>
            )}
            {selected && (
              <Card>
                <BlockStack gap="200">
                  <Text as="h2" variant="headingMd">Performance</Text>
                  <ItemPerformance itemId={selected} />
                </BlockStack>
              </Card>
            )}
            {!selected && !creating && <Card><Text as="p" tone="subdued">Pick an item to edit it and see its performance.</Text></Card>}
          </BlockStack>
        </Layout.Section>
      </Layout>
    </Page>
  );
}
