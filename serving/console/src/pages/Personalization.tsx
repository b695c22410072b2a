// Personalization: the rules in evaluation order (create, edit, reorder by priority, delete), a test
// of the rules against a user in a context, and the segments (create, edit, delete, members).
import { Badge, Banner, BlockStack, Button, ButtonGroup, Card, Form, FormLayout, InlineStack, Layout, Page, Select, Text, TextField } from "@shopify/polaris";
import { useState } from "react";
import { ApiError, api, type Evaluation, type FieldErrors, type Rule, type Segment } from "../api";
import { LoadError, Loading, Panel } from "../components/common";
import { RuleForm } from "../components/RuleForm";
import { checkId, errorFor, parseJson } from "../forms";
import { useApi } from "../hooks";

/** New priorities after moving rule `index` one place up (-1) or down (+1) in evaluation order:
 * the two rules swap priorities; equal priorities are separated so the order really changes. */
export function swapPriorities(rules: Rule[], index: number, delta: -1 | 1): Rule[] {
  const other = index + delta;
  if (other < 0 || other >= rules.length) return [];
  const a = rules[index];
  const b = rules[other];
  let pa = b.priority ?? 0;
  let pb = a.priority ?? 0;
  if (pa === pb) {
    pa = delta === -1 ? pb + 1 : pb - 1;
  }
  return [
    { ...a, priority: pa },
    { ...b, priority: pb },
  ];
}

function RuleTester({ rules }: { rules: Rule[] }) {
  const [user, setUser] = useState("");
  const [channel, setChannel] = useState<"web" | "email" | "mobile">("web");
  const [page, setPage] = useState("");
  const [placement, setPlacement] = useState("");
  const [device, setDevice] = useState("");
  const [locale, setLocale] = useState("");
  const [errors, setErrors] = useState<FieldErrors>({});
  const [result, setResult] = useState<Evaluation>();
  const [failure, setFailure] = useState<ApiError | null>(null);

  const submit = async () => {
    const e: FieldErrors = {};
    if (!user.trim()) e.user_id = "required";
    setErrors(e);
    if (Object.keys(e).length) return;
    const context: Record<string, string> = {};
    if (page.trim()) context.page = page.trim();
    if (placement.trim()) context.placement = placement.trim();
    if (device.trim()) context.device = device.trim();
    if (locale.trim()) context.locale = locale.trim();
    setFailure(null);
    try {
      setResult(await api.rules.evaluate({ user_id: user.trim(), channel, context, all_matches: true }));
    } catch (exc) {
      if (exc instanceof ApiError) {
        setErrors(exc.fields);
        setFailure(exc);
      }
    }
  };

  return (
    <Panel title="Test the rules" gap="300">
      <Form onSubmit={submit}>
        <FormLayout>
          <FormLayout.Group condensed>
            <TextField label="Test user id" value={user} onChange={setUser} autoComplete="off" error={errorFor(errors, "user_id")} />
            <Select label="Channel" options={["web", "email", "mobile"]} value={channel} onChange={(v) => setChannel(v as typeof channel)} />
            <TextField label="Device" value={device} onChange={setDevice} autoComplete="off" error={errorFor(errors, "context.device")} />
          </FormLayout.Group>
          <FormLayout.Group condensed>
            <TextField label="Page" value={page} onChange={setPage} autoComplete="off" error={errorFor(errors, "context.page")} />
            <TextField label="Placement" value={placement} onChange={setPlacement} autoComplete="off" error={errorFor(errors, "context.placement")} />
            <TextField label="Locale" value={locale} onChange={setLocale} autoComplete="off" error={errorFor(errors, "context.locale")} />
          </FormLayout.Group>
          <Button submit>Evaluate</Button>
        </FormLayout>
      </Form>
      {failure && <LoadError error={failure} title="The evaluation failed" />}
      {result && (
        <BlockStack gap="200">
          <Text as="p" id="evaluation-winner">
            {result.rule_id ? (
              <>
                Winner: <strong>{result.rule_id}</strong>
                {result.variant ? ` (variant ${result.variant})` : ""} · content{" "}
                <code>{JSON.stringify(result.content)}</code>
              </>
            ) : (
              `No rule matched ${result.user_id} on ${result.channel} (${rules.length} rules in force).`
            )}
          </Text>
          {result.matches.length > 1 && (
            <Text as="p" tone="subdued">
              Also matched: {result.matches.slice(1).map((m) => `${m.rule_id} (priority ${m.priority})`).join(", ")}
            </Text>
          )}
        </BlockStack>
      )}
    </Panel>
  );
}

function Rules() {
  const list = useApi(() => api.rules.list(), []);
  const [editing, setEditing] = useState<Rule | "new" | null>(null);
  const [failure, setFailure] = useState<ApiError | null>(null);
  const rules = list.data?.rules ?? [];

  const move = async (index: number, delta: -1 | 1) => {
    setFailure(null);
    try {
      for (const r of swapPriorities(rules, index, delta)) await api.rules.replace(r);
    } catch (exc) {
      if (exc instanceof ApiError) setFailure(exc);
    }
    list.reload();
  };
  const remove = async (id: string) => {
    if (!window.confirm(`Delete rule ${id}?`)) return;
    setFailure(null);
    try {
      await api.rules.remove(id);
    } catch (exc) {
      if (exc instanceof ApiError) setFailure(exc);
    }
    list.reload();
  };

  return (
    <Card>
      <BlockStack gap="300">
        <InlineStack align="space-between">
          <Text as="h2" variant="headingMd">
            Rules (evaluation order)
          </Text>
          <Button onClick={() => setEditing("new")} variant="primary">
            New rule
          </Button>
        </InlineStack>
        <LoadError error={list.error ?? failure} />
        {editing && (
          <Card background="bg-surface-secondary">
            <RuleForm
              key={editing === "new" ? "new" : editing.id}
              initial={editing === "new" ? undefined : editing}
              onSaved={() => {
                setEditing(null);
                list.reload();
              }}
              onCancel={() => setEditing(null)}
            />
          </Card>
        )}
        <Loading loading={list.loading && !list.data}>
          {rules.length === 0 ? (
            <Text as="p" tone="subdued">
              No rules yet.
            </Text>
          ) : (
            <div className="aura-scroll">
              <table className="aura-table" data-testid="rules">
                <thead>
                  <tr>
                    <th>Priority</th>
                    <th>Rule</th>
                    <th>Channels</th>
                    <th>Variant / content</th>
                    <th />
                  </tr>
                </thead>
                <tbody>
                  {rules.map((r, i) => (
                    <tr key={r.id} data-rule={r.id}>
                      <td className="num">{r.priority ?? 0}</td>
                      <td>
                        <strong>{r.id}</strong> {r.name && <span>· {r.name}</span>}{" "}
                        {r.enabled === false && <Badge tone="warning">disabled</Badge>}
                        <div>
                          <code>{JSON.stringify(r.conditions)}</code>
                        </div>
                      </td>
                      <td>{(r.channels ?? []).join(", ")}</td>
                      <td>
                        {r.variant ?? ""} <code>{r.content === undefined ? "" : JSON.stringify(r.content)}</code>
                      </td>
                      <td>
                        <ButtonGroup>
                          <Button size="slim" onClick={() => move(i, -1)} disabled={i === 0} accessibilityLabel={`Move ${r.id} up`}>
                            ↑
                          </Button>
                          <Button size="slim" onClick={() => move(i, 1)} disabled={i === rules.length - 1} accessibilityLabel={`Move ${r.id} down`}>
                            ↓
                          </Button>
                          <Button size="slim" onClick={() => setEditing(r)}>
                            Edit
                          </Button>
                          <Button size="slim" tone="critical" onClick={() => remove(r.id)}>
                            Delete
                          </Button>
                        </ButtonGroup>
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
        </Loading>
      </BlockStack>
      <div style={{ height: 16 }} />
      <RuleTester rules={rules} />
    </Card>
  );
}

function SegmentForm({ initial, onSaved, onCancel }: { initial?: Segment; onSaved: () => void; onCancel: () => void }) {
  const [id, setId] = useState(initial?.name ?? "");
  const [description, setDescription] = useState(initial?.description ?? "");
  const [rule, setRule] = useState(initial ? JSON.stringify(initial.rule) : '[["orders", ">=", 3]]');
  const [errors, setErrors] = useState<FieldErrors>({});
  const [failure, setFailure] = useState<string | null>(null);

  const submit = async () => {
    const e: FieldErrors = {};
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(id)) checkId(id, "id", e);
    const conditions = parseJson(rule, "conditions", e);
    if (conditions === undefined && !e.conditions) e.conditions = "required";
    setErrors(e);
    if (Object.keys(e).length) return;
    const doc: Record<string, unknown> = { id, conditions };
    if (description.trim()) doc.description = description.trim();
    try {
      await (initial ? api.segments.replace(id, doc) : api.segments.create(doc));
      onSaved();
    } catch (exc) {
      if (exc instanceof ApiError) {
        setErrors(exc.fields);
        setFailure(`${exc.status}: ${exc.message}`);
      }
    }
  };
  return (
    <Form onSubmit={submit}>
      <FormLayout>
        {failure && <Banner tone="critical" title="The segment was not saved"><p>{failure}</p></Banner>}
        <FormLayout.Group condensed>
          <TextField label="Segment id" value={id} onChange={setId} autoComplete="off" disabled={Boolean(initial)} error={errorFor(errors, "id")} />
          <TextField label="Description" value={description} onChange={setDescription} autoComplete="off" error={errorFor(errors, "description")} />
        </FormLayout.Group>
        <TextField label="Conditions (JSON)" value={rule} onChange={setRule} autoComplete="off" multiline={2} monospaced helpText='e.g. [["orders", ">=", 3], {"field": "ltv", "op": "gte", "value": 300}]' error={errorFor(errors, "conditions")} />
        <InlineStack gap="200">
          <Button submit variant="primary">{initial ? "Save segment" : "Create segment"}</Button>
          <Button onClick={onCancel}>Cancel</Button>
        </InlineStack>
      </FormLayout>
    </Form>
  );
}

function Segments() {
  const list = useApi(() => api.segments.list(), []);
  const [editing, setEditing] = useState<Segment | "new" | null>(null);
  const [failure, setFailure] = useState<ApiError | null>(null);
  const remove = async (name: string) => {
    if (!window.confirm(`Delete segment ${name} and its memberships?`)) return;
    try {
      await api.segments.remove(name);
    } catch (exc) {
      if (exc instanceof ApiError) setFailure(exc);
    }
    list.reload();
  };
  return (
    <Card>
      <BlockStack gap="300">
        <InlineStack align="space-between">
          <Text as="h2" variant="headingMd">
            Segments
          </Text>
          <Button onClick={() => setEditing("new")}>New segment</Button>
        </InlineStack>
        <LoadError error={list.error ?? failure} />
        {editing && (
          <SegmentForm
            key={editing === "new" ? "new" : editing.name}
            initial={editing === "new" ? undefined : editing}
            onSaved={() => {
              setEditing(null);
              list.reload();
            }}
            onCancel={() => setEditing(null)}
          />
        )}
        <Loading loading={list.loading && !list.data}>
          <div className="aura-scroll">
            <table className="aura-table" data-testid="segments">
              <thead>
                <tr>
                  <th>Segment</th>
                  <th>Rule</th>
                  <th className="num">Members</th>
                  <th>Backfill</th>
                  <th />
                </tr>
              </thead>
              <tbody>
                {(list.data?.segments ?? []).map((s) => (
                  <tr key={s.name}>
                    <td>
                      <strong>{s.name}</strong> <Badge>{s.source}</Badge>
                      {s.description && <div>{s.description}</div>}
                    </td>
                    <td>
                      <code>{JSON.stringify(s.rule)}</code>
                    </td>
                    <td className="num">{s.members.toLocaleString()}</td>
                    <td>{s.backfill ? `${s.backfill.state}${s.backfill.scanned !== undefined ? ` · ${s.backfill.scanned} scanned` : ""}` : "–"}</td>
                    <td>
                      <ButtonGroup>
                        <Button size="slim" onClick={() => setEditing(s)}>Edit</Button>
                        {s.source === "api" && <Button size="slim" tone="critical" onClick={() => remove(s.name)}>Delete</Button>}
                      </ButtonGroup>
                    </td>
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

export function Personalization() {
  return (
    <Page title="Personalization" fullWidth>
      <Layout>
        <Layout.Section>
          <Rules />
        </Layout.Section>
        <Layout.Section>
          <Segments />
        </Layout.Section>
      </Layout>
    </Page>
  );
}
