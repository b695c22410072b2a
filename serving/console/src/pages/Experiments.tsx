// Experiments: the list with status, creation (A/B/n and multivariate), results per variant with
// 95% intervals, uplift, p-value, chance to beat control and an SRM warning; start, pause, stop,
// declare a winner.
import { Badge, Banner, BlockStack, Button, ButtonGroup, Card, InlineStack, Layout, Page, Select, Text } from "@shopify/polaris";
import { useState } from "react";
import { ApiError, api, type Experiment, type ExperimentResults } from "../api";
import { LoadError, Loading, Panel } from "../components/common";
import { ExperimentForm } from "../components/ExperimentForm";
import { usePoll } from "../hooks";
import { navigate } from "../router";
import type { PageProps } from "./types";

const pct = (v: number | null | undefined, digits = 2) => (v === null || v === undefined ? "–" : `${(v * 100).toFixed(digits)}%`);

const STATUS_TONE: Record<string, "success" | "info" | "warning" | "critical" | undefined> = {
  running: "success",
  draft: "info",
  paused: "warning",
  stopped: undefined,
  winner: "success",
};

/** The lifecycle moves offered from a status (the server refuses the others with a 409). */
export function nextStatuses(status: string): string[] {
  switch (status) {
    case "draft":
      return ["running"];
    case "running":
      return ["paused", "stopped"];
    case "paused":
      return ["running", "stopped"];
    default:
      return [];
  }
}

const ACTION: Record<string, string> = { running: "Start", paused: "Pause", stopped: "Stop" };

function Interval({ lo, hi, max }: { lo: number; hi: number; max: number }) {
  const scale = max > 0 ? 100 / max : 0;
  return (
    <div className="aura-interval" title={`${pct(lo)} – ${pct(hi)}`}>
      <div style={{ left: `${lo * scale}%`, width: `${Math.max(1, (hi - lo) * scale)}%` }} />
    </div>
  );
}

function Results({ exp, onChanged }: { exp: Experiment; onChanged: () => void }) {
  const [metric, setMetric] = useState<string>(exp.conversion_events?.[0] ?? "");
  const results = usePoll<ExperimentResults>(() => api.experiments.results(exp.id, metric || undefined), 5000, [exp.id, metric]);
  const [failure, setFailure] = useState<ApiError | null>(null);
  const [winner, setWinner] = useState("");
  const r = results.data;
  const maxHi = Math.max(0.0001, ...(r?.variants ?? []).map((v) => v.ci95[1]));

  const move = async (status: string, w?: string) => {
    setFailure(null);
    try {
      await api.experiments.setStatus(exp.id, status, w);
      onChanged();
      results.reload();
    } catch (exc) {
      if (exc instanceof ApiError) setFailure(exc);
    }
  };

  return (
    <Card>
      <BlockStack gap="300">
        <InlineStack align="space-between" blockAlign="center">
          <InlineStack gap="200" blockAlign="center">
            <Text as="h2" variant="headingMd">
              {exp.id}
            </Text>
            <Badge tone={STATUS_TONE[exp.status]}>{exp.status}</Badge>
            {exp.winner && <Badge tone="success">{`winner: ${exp.winner}`}</Badge>}
          </InlineStack>
          <ButtonGroup>
            {nextStatuses(exp.status).map((s) => (
              <Button key={s} onClick={() => move(s)} variant={s === "running" ? "primary" : undefined} tone={s === "stopped" ? "critical" : undefined}>
                {ACTION[s]}
              </Button>
            ))}
          </ButtonGroup>
        </InlineStack>
        <LoadError error={failure} title="The status did not change" />
        {(exp.conversion_events?.length ?? 0) > 1 && (
          <Select label="Metric" options={exp.conversion_events!} value={metric} onChange={setMetric} />
        )}
        <LoadError error={results.error} />
        {r?.srm.mismatch && (
          <Banner tone="warning" title="Sample ratio mismatch">
            <p>
              Exposures do not match the configured weights (χ² {r.srm.chi2.toFixed(2)}, p = {r.srm.p_value.toExponential(2)}).
              The assignment or the exposure logging is biased: do not trust these results until it is explained.
            </p>
          </Banner>
        )}
        <Loading loading={results.loading && !r}>
          {r && (
            <div className="aura-scroll">
              <table className="aura-table" data-testid="experiment-results">
                <thead>
                  <tr>
                    <th>Variant</th>
                    <th className="num">Exposures</th>
                    <th className="num">Conversions</th>
                    <th className="num">Rate</th>
                    <th>95% interval</th>
                    <th className="num">Uplift</th>
                    <th className="num">p-value</th>
                    <th className="num">Chance to beat control</th>
                    <th className="num">Revenue / exposure</th>
                  </tr>
                </thead>
                <tbody>
                  {r.variants.map((v) => (
                    <tr key={v.variant}>
                      <td>
                        {v.variant} {v.variant === r.control && <Badge>control</Badge>}
                      </td>
                      <td className="num">{v.exposures.toLocaleString()}</td>
                      <td className="num">{v.conversions.toLocaleString()}</td>
                      <td className="num">{pct(v.conversion_rate)}</td>
                      <td>
                        <Interval lo={v.ci95[0]} hi={v.ci95[1]} max={maxHi} />
                        <span className="aura-small">
                          {pct(v.ci95[0])} – {pct(v.ci95[1])}
                        </span>
                      </td>
                      <td className="num">{v.variant === r.control ? "" : pct(v.uplift, 1)}</td>
                      <td className="num">{v.p_value === undefined ? "" : v.p_value.toFixed(4)}</td>
                      <td className="num">{v.chance_to_beat_control === undefined ? "" : pct(v.chance_to_beat_control, 1)}</td>
                      <td className="num">{v.revenue_per_exposure.toFixed(2)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
        </Loading>
        {r && (exp.status === "running" || exp.status === "paused" || exp.status === "stopped") && (
          <InlineStack gap="200" blockAlign="end">
            <Select
              label="Declare a winner"
              options={[{ label: "choose a variant", value: "" }, ...r.variants.map((v) => ({ label: v.variant, value: v.variant }))]}
              value={winner}
              onChange={setWinner}
            />
            <Button disabled={!winner} onClick={() => move("winner", winner)}>
              Everyone gets it
            </Button>
          </InlineStack>
        )}
      </BlockStack>
    </Card>
  );
}

export function Experiments({ route }: PageProps) {
  const selected = route.params.get("id") ?? "";
  const list = usePoll(() => api.experiments.list(), 10_000);
  const [creating, setCreating] = useState(false);
  const exps = list.data?.experiments ?? [];
  const current = exps.find((e) => e.id === selected);

  return (
    <Page title="Experiments" fullWidth primaryAction={{ content: "New experiment", onAction: () => setCreating(true) }}>
      <Layout>
        {creating && (
          <Layout.Section>
            <Panel title="New experiment">
              <ExperimentForm
                onCreated={(e) => {
                  setCreating(false);
                  list.reload();
                  navigate("/experiments", { id: e.id });
                }}
              />
            </Panel>
          </Layout.Section>
        )}
        <Layout.Section variant="oneThird">
          <Panel title="All experiments" error={list.error} loading={list.loading && !list.data}>
            {exps.length === 0 ? (
              <Text as="p" tone="subdued">
                No experiments yet.
              </Text>
            ) : (
              <table className="aura-table" data-testid="experiments">
                <tbody>
                  {exps.map((e) => (
                    <tr key={e.id} className={e.id === selected ? "aura-selected" : undefined}>
                      <td>
                        <a href={`#/experiments?id=${encodeURIComponent(e.id)}`}>{e.id}</a>
                        <div className="aura-small">
                          {e.factors ? `multivariate · ${Object.keys(e.factors).join(" × ")}` : `${e.variants?.length ?? 0} variants`}
                        </div>
                      </td>
                      <td>
                        <Badge tone={STATUS_TONE[e.status]}>{e.status}</Badge>
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
          </Panel>
        </Layout.Section>
        <Layout.Section>
          {current ? (
            <Results key={current.id} exp={current} onChanged={list.reload} />
          ) : (
            <Card>
              <Text as="p" tone="subdued">
                {selected ? `No experiment ${selected}.` : "Choose an experiment to see its results."}
              </Text>
            </Card>
          )}
        </Layout.Section>
      </Layout>
    </Page>
  );
}
