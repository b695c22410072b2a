// Models: the registry (every model's latest version and the version each placement serves), the
// selected model's versions with their offline metrics and status (a version being trained shows
// as `training`; the page refreshes while one is), starting a training job, activating a version
// at a placement, and online monitoring (CTR of the lists served with the model, the online
// learner's progressive-validation error).
import { Badge, BlockStack, Button, Card, Form, FormLayout, InlineStack, Layout, Page, Select, Text, TextField } from "@shopify/polaris";
import { useState } from "react";
import { ApiError } from "../../api";
import { extra, type ModelVersion } from "../../api/extra";
import { LoadError, Loading, fmtValue } from "../../components/common";
import { usePoll } from "../../hooks";
import { navigate } from "../../router";
import { ActionError, FormFailure, fieldError, parseNumber, pct, useSubmission, when } from "../forms";
import type { PageProps } from "../types";

export const PATH = "/models";
const WINDOWED = ["ease", "item_knn", "popularity"];
const DAY = 86_400_000;
const STATUS_TONE: Record<string, "success" | "info" | "critical" | "attention" | undefined> = {
  active: "success", ready: "info", training: "attention", failed: "critical", retired: undefined,
};

/** The training request: a job over the recent history, or trained on a window and evaluated on the next days. */
export function trainBody(v: { type: string; lam: string; activate: string; trainDays: string; evalDays: string }, now = Date.now()) {
  const errors: Record<string, string> = {};
  const body: Record<string, unknown> = { type: v.type };
  const lam = parseNumber(v.lam);
  if (lam !== undefined) {
    if (!(lam > 0 && lam <= 1e6)) errors.lam = "in (0, 1e6]";
    body.lam = lam;
  }
  if (v.activate.trim()) body.activate = v.activate.trim();
  const td = parseNumber(v.trainDays);
  const ed = parseNumber(v.evalDays);
  if (td !== undefined || ed !== undefined) {
    if (!WINDOWED.includes(v.type)) errors.train_to = `a window applies to ${WINDOWED.join(", ")}`;
    if (!(td !== undefined && td > 0)) errors.train_from = "days of training, > 0";
    if (!(ed !== undefined && ed > 0)) errors.eval_to = "days of evaluation, > 0";
    if (td && ed && td > 0 && ed > 0) {
      const evalTo = Math.floor(now);
      body.train_to = evalTo - Math.round(ed * DAY);
      body.train_from = (body.train_to as number) - Math.round(td * DAY);
      body.eval_to = evalTo;
    }
  }
  return { body, errors };
}

function Versions({ modelId, placements }: { modelId: string; placements: string[] }) {
  const [fast, setFast] = useState(false);
  const versions = usePoll(async () => {
    const vs = await extra.models.versions(modelId);
    setFast(vs.some((v) => v.status === "training"));
    return vs;
  }, fast ? 3000 : 15_000, [modelId]);
  const [placement, setPlacement] = useState(placements[0] ?? "homepage");
  const [error, setError] = useState<ApiError | null>(null);
  const [done, setDone] = useState<string | null>(null);
  const activate = async (v: ModelVersion) => {
    setError(null);
    setDone(null);
    try {
      if (!placement.trim()) throw new ApiError(0, "name the placement to serve it at");
      await extra.models.activate(modelId, v.version, { placement: placement.trim() });
      setDone(`version ${v.version} now serves ${placement.trim()}`);
      versions.reload();
    } catch (exc) {
      setError(exc instanceof ApiError ? exc : new ApiError(0, String(exc)));
    }
  };
  const metricNames = [...new Set((versions.data ?? []).flatMap((v) => Object.keys(v.metrics ?? {})))].sort();
  return (
    <BlockStack gap="200">
      <InlineStack gap="200" blockAlign="end">
        <TextField label="Activate at placement" value={placement} onChange={setPlacement} autoComplete="off" />
        {done && <Text as="span" tone="success">{done}</Text>}
      </InlineStack>
      <ActionError error={error} />
      <LoadError error={versions.error} />
      <Loading loading={versions.loading && !versions.data}>
        <div className="aura-scroll">
          <table className="aura-table" data-testid="model-versions">
            <thead>
              <tr>
                <th>Version</th><th>Status</th><th>Type</th><th>Window</th>
                {metricNames.map((m) => <th key={m} className="num">{m}</th>)}
                <th>Updated</th><th />
              </tr>
            </thead>
            <tbody>
              {(versions.data ?? []).map((v) => (
                <tr key={v.version}>
                  <td>{v.version}</td>
                  <td><Badge tone={STATUS_TONE[v.status]}>{v.status}</Badge></td>
                  <td>{v.type}</td>
                  <td>{v.window_start ? `${new Date(v.window_start).toLocaleDateString()} – ${new Date(v.window_end ?? 0).toLocaleDateString()}` : "–"}</td>
                  {metricNames.map((m) => <td key={m} className="num">{fmtValue(v.metrics?.[m])}</td>)}
                  <td>{when(v.updated_at)}</td>
                  <td>{["ready", "active"].includes(v.status) && v.has_artifact !== false && (
                    <Button size="slim" onClick={() => activate(v)}>Activate</Button>
                  )}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </Loading>
    </BlockStack>
  );
}

function MonitoringView({ modelId }: { modelId: string }) {
  const mon = usePoll(() => extra.models.monitoring(modelId), 10_000, [modelId]);
  const rows = Object.entries(mon.data?.served_as ?? {});
  return (
    <BlockStack gap="200">
      <LoadError error={mon.error} />
      {rows.length === 0 ? (
        <Text as="p" tone="subdued">Nothing served with this model has been measured yet.</Text>
      ) : (
        <table className="aura-table" data-testid="model-monitoring">
          <thead><tr><th>Served as</th><th className="num">Impressions</th><th className="num">Clicks</th><th className="num">CTR</th><th className="num">Online error</th></tr></thead>
          <tbody>
            {rows.map(([name, m]) => {
              const r = m as Record<string, number | null>;
              return (
                <tr key={name}>
                  <td>{name}</td>
                  <td className="num">{fmtValue(r.impressions ?? null)}</td>
                  <td className="num">{fmtValue(r.clicks ?? null)}</td>
                  <td className="num">{pct(r.ctr)}</td>
                  <td className="num">{fmtValue(r.progressive_validation_error ?? null)}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
    </BlockStack>
  );
}

function TrainForm({ modelId, types, onStarted }: { modelId: string | null; types: string[]; onStarted: (id: string) => void }) {
  const [id, setId] = useState(modelId ?? "ease");
  const [v, setV] = useState({ type: modelId && types.includes(modelId) ? modelId : "ease", lam: "500", activate: "", trainDays: "", evalDays: "" });
  const [started, setStarted] = useState<string | null>(null);
  const sub = useSubmission();
  const set = (k: keyof typeof v) => (value: string) => setV({ ...v, [k]: value });
  const submit = async () => {
    const { body, errors } = trainBody(v);
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(id.trim())) errors.model_id = "1-64 letters, digits, '_', '.', '-'";
    const got = await sub.submit(() => errors, () => extra.models.train(id.trim(), body));
    if (got) {
      setStarted(`job ${got.job_pid ?? ""} started; its versions below show the progress (log: ${got.log ?? "–"})`);
      onStarted(id.trim());
    }
  };
  return (
    <Form onSubmit={submit}>
      <FormLayout>
        <FormFailure sub={sub} />
        <FormLayout.Group condensed>
          <TextField label="Model id" value={id} onChange={setId} autoComplete="off" error={fieldError(sub.errors, "model_id")}
            helpText="a job's model id is its type; a windowed run may name a new id" />
          <Select label="Type" value={v.type} onChange={set("type")} options={types.map((t) => ({ label: t, value: t }))} error={fieldError(sub.errors, "type")} />
        </FormLayout.Group>
        <FormLayout.Group condensed>
          <TextField label="Lambda (EASE)" value={v.lam} onChange={set("lam")} autoComplete="off" error={fieldError(sub.errors, "lam")} />
          <TextField label="Activate at" value={v.activate} onChange={set("activate")} autoComplete="off" helpText="optional placement" />
        </FormLayout.Group>
        <FormLayout.Group condensed>
          <TextField label="Train on days" value={v.trainDays} onChange={set("trainDays")} autoComplete="off"
            error={fieldError(sub.errors, "train_from")} helpText="optional window (ease, item_knn, popularity)" />
          <TextField label="Evaluate on the next days" value={v.evalDays} onChange={set("evalDays")} autoComplete="off"
            error={fieldError(sub.errors, "eval_to") ?? fieldError(sub.errors, "train_to")} />
        </FormLayout.Group>
        <Button submit loading={sub.busy}>Train</Button>
        {started && <Text as="p" tone="success">{started}</Text>}
      </FormLayout>
    </Form>
  );
}

export function Models({ route }: PageProps) {
  const list = usePoll(() => extra.models.list(), 15_000, []);
  const selected = route.params.get("id");
  const placements = Object.entries(list.data?.placements ?? {});
  const [reloadKey, setReloadKey] = useState(0);
  return (
    <Page title="Models" subtitle="Registry, versions, training and online monitoring" fullWidth>
      <Layout>
        <Layout.Section>
          <BlockStack gap="400">
            <Card>
              <BlockStack gap="200">
                <Text as="h2" variant="headingMd">Registry</Text>
                <LoadError error={list.error} />
                <Loading loading={list.loading && !list.data}>
                  {(list.data?.models ?? []).length > 0 && (
                    <table className="aura-table" data-testid="model-list">
                      <thead><tr><th>Model</th><th>Type</th><th className="num">Latest version</th><th>Status</th><th>Metrics</th></tr></thead>
                      <tbody>
                        {(list.data?.models ?? []).map((m) => (
                          <tr key={m.model_id}>
                            <td><a href={`#${PATH}?id=${encodeURIComponent(m.model_id)}`}>{m.model_id}</a>{m.model_id === selected && " ←"}</td>
                            <td>{m.type}</td>
                            <td className="num">{m.version}</td>
                            <td><Badge tone={STATUS_TONE[m.status]}>{m.status}</Badge></td>
                            <td>{Object.entries(m.metrics ?? {}).map(([k, x]) => `${k} ${fmtValue(x)}`).join(" · ") || "–"}</td>
                          </tr>
                        ))}
                      </tbody>
                    </table>
                  )}
                  <Text as="h3" variant="headingSm">Types</Text>
                  <table className="aura-table" data-testid="model-types">
                    <thead><tr><th>Type</th><th>Trained by</th><th>Models</th></tr></thead>
                    <tbody>
                      {(list.data?.types ?? []).map((t) => {
                        const ms = (list.data?.models ?? []).filter((m) => m.type === t);
                        return (
                          <tr key={t}>
                            <td>{t}</td>
                            <td>{WINDOWED.includes(t) ? "a job (train below)" : "the stream, continuously"}</td>
                            <td>{ms.length ? ms.map((m) => (
                              <a key={m.model_id} href={`#${PATH}?id=${encodeURIComponent(m.model_id)}`} style={{ marginRight: 6 }}>
                                {m.model_id} v{m.version}</a>)) : <Text as="span" tone="subdued">none yet</Text>}</td>
                          </tr>
                        );
                      })}
                    </tbody>
                  </table>
                </Loading>
              </BlockStack>
            </Card>
            {selected && (
              <Card>
                <BlockStack gap="200">
                  <Text as="h2" variant="headingMd">{selected}: versions</Text>
                  <Versions key={`${selected}-${reloadKey}`} modelId={selected} placements={placements.map(([p]) => p)} />
                </BlockStack>
              </Card>
            )}
            {selected && (
              <Card>
                <BlockStack gap="200">
                  <Text as="h2" variant="headingMd">{selected}: online monitoring</Text>
                  <MonitoringView modelId={selected} />
                </BlockStack>
              </Card>
            )}
          </BlockStack>
        </Layout.Section>
        <Layout.Section variant="oneThird">
          <BlockStack gap="400">
            <Card>
              <BlockStack gap="200">
                <Text as="h2" variant="headingMd">Served per placement</Text>
                {placements.length === 0 ? (
                  <Text as="p" tone="subdued">No placement serves a model version: hybrid with default weights.</Text>
                ) : (
                  <table className="aura-table" data-testid="model-placements">
                    <tbody>
                      {placements.map(([p, a]) => (
                        <tr key={p}>
                          <td>{p}</td>
                          <td>{a.model_id} v{a.version}</td>
                          <td>{a.weights ? Object.entries(a.weights).map(([k, w]) => `${k} ${w}`).join(", ") : "default weights"}</td>
                        </tr>
                      ))}
                    </tbody>
                  </table>
                )}
              </BlockStack>
            </Card>
            <Card>
              <BlockStack gap="200">
                <Text as="h2" variant="headingMd">Train</Text>
                <TrainForm key={selected ?? ""} modelId={selected} types={list.data?.types ?? ["ease"]} onStarted={(id) => {
                  setReloadKey((k) => k + 1);
                  list.reload();
                  navigate(PATH, { id });
                }} />
              </BlockStack>
            </Card>
          </BlockStack>
        </Layout.Section>
      </Layout>
    </Page>
  );
}
