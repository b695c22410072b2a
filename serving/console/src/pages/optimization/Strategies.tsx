// Optimization > Strategies: which recommendation method each placement lets a bandit pick
// (strategy.<placement> bandits: PUT/DELETE /v1/strategies/{placement}), what each has learned, and
// a test choice for a user.
import { BlockStack, Button, Card, Checkbox, Form, FormLayout, InlineStack, Layout, Page, Select, Text, TextField } from "@shopify/polaris";
import { useState } from "react";
import { ApiError } from "../../api";
import { extra, STRATEGIES, type BanditConfig, type BanditDetail, type Choice } from "../../api/extra";
import { LoadError, Loading } from "../../components/common";
import { useApi } from "../../hooks";
import { ActionError, FormFailure, fieldError, parseNumber, pct, useSubmission } from "../forms";
import { allocation } from "./banditForm";

const PLACEMENT = /^[A-Za-z0-9_.-]{1,56}$/;
const SHOWN = 12; // placements shown at once (each reads its bandit's state); the filter finds the others

export function strategyBody(v: { policy: string; floor: string; strategies: string[] }) {
  const errors: Record<string, string> = {};
  const floor = parseNumber(v.floor);
  if (floor !== undefined && !(floor >= 0 && floor <= 0.5)) errors.floor = "exploration floor in [0, 0.5]";
  if (v.strategies.length === 0) errors.strategies = "at least one strategy";
  return { body: { policy: v.policy, ...(floor !== undefined ? { floor } : {}), strategies: v.strategies }, errors };
}

function placementOf(b: BanditConfig): string {
  return (b.placement as string | undefined) ?? b.id.replace(/^strategy\./, "");
}

function StrategyRow({ bandit, onChanged }: { bandit: BanditConfig; onChanged: () => void }) {
  const placement = placementOf(bandit);
  const detail = useApi<BanditDetail>(() => extra.bandits.get(bandit.id), [bandit.id]);
  const [user, setUser] = useState("");
  const [choice, setChoice] = useState<Choice | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const run = async (fn: () => Promise<void>) => {
    setError(null);
    try {
      await fn();
    } catch (exc) {
      setError(exc instanceof ApiError ? exc : new ApiError(0, String(exc)));
    }
  };
  const share = detail.data ? allocation(detail.data.arms) : {};
  return (
    <Card>
      <BlockStack gap="200">
        <InlineStack align="space-between">
          <Text as="h3" variant="headingSm">
            {placement} <Text as="span" tone="subdued">({bandit.id}, {bandit.policy})</Text>
          </Text>
          <Button tone="critical" onClick={() => run(async () => {
            await extra.strategies.clear(placement);
            onChanged();
          })}>
            Stop
          </Button>
        </InlineStack>
        <ActionError error={error} />
        <LoadError error={detail.error} />
        <Loading loading={detail.loading && !detail.data}>
          <table className="aura-table">
            <thead>
              <tr><th>Strategy</th><th className="num">Share of pulls</th><th className="num">Pulls</th><th className="num">Mean reward</th></tr>
            </thead>
            <tbody>
              {(detail.data?.arms ?? []).map((a) => (
                <tr key={a.arm}>
                  <td>{a.arm}</td>
                  <td className="num">{pct(share[a.arm])}</td>
                  <td className="num">{a.pulls}</td>
                  <td className="num">{a.mean.toFixed(4)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </Loading>
        <Form onSubmit={() => run(async () => {
          if (!user.trim()) throw new ApiError(0, "a user id is needed to choose");
          setChoice(await extra.strategies.choose(placement, user.trim()));
        })}>
          <InlineStack gap="200" blockAlign="end">
            <TextField label="Test for user" value={user} onChange={setUser} autoComplete="off" />
            <Button submit>Choose</Button>
            {choice && <Text as="span">→ <strong>{choice.arm}</strong>{choice.explore ? " (explored)" : ""}</Text>}
          </InlineStack>
        </Form>
      </BlockStack>
    </Card>
  );
}

export function Strategies() {
  const list = useApi(() => extra.bandits.list(), []);
  const models = useApi(() => extra.models.list(), []);
  const [placement, setPlacement] = useState("");
  const [policy, setPolicy] = useState("thompson");
  const [floor, setFloor] = useState("0.05");
  const [chosen, setChosen] = useState<string[]>([...STRATEGIES]);
  const sub = useSubmission();
  const [filter, setFilter] = useState("");
  const allStrategies = (list.data?.bandits ?? []).filter((b) => b.id.startsWith("strategy."));
  const matching = allStrategies.filter((b) => placementOf(b).toLowerCase().includes(filter.trim().toLowerCase()));
  const strategyBandits = matching.slice(0, SHOWN);
  const known = Object.keys(models.data?.placements ?? {});
  const submit = async () => {
    const { body, errors } = strategyBody({ policy, floor, strategies: chosen });
    if (!PLACEMENT.test(placement.trim())) errors.placement = "1-56 letters, digits, '_', '.', '-'";
    const done = await sub.submit(() => errors, () => extra.strategies.set(placement.trim(), body));
    if (done) {
      setPlacement("");
      list.reload();
    }
  };
  return (
    <Page title="Strategies" subtitle="A bandit per placement picks the recommendation method and learns from clicks and purchases" fullWidth>
      <Layout>
        <Layout.Section>
          <BlockStack gap="400">
            {allStrategies.length > SHOWN && (
              <InlineStack gap="200" blockAlign="center">
                <TextField label="Filter placements" labelHidden placeholder="Filter placements" value={filter} onChange={setFilter} autoComplete="off" />
                <Text as="span" tone="subdued">{Math.min(SHOWN, matching.length)} of {matching.length} shown</Text>
              </InlineStack>
            )}
            <LoadError error={list.error} />
            <Loading loading={list.loading && !list.data}>
              {strategyBandits.length === 0 ? (
                <Card>
                  <Text as="p" tone="subdued">No placement lets a bandit pick its method: every request uses its method or hybrid.</Text>
                </Card>
              ) : (
                strategyBandits.map((b) => <StrategyRow key={b.id} bandit={b} onChanged={list.reload} />)
              )}
            </Loading>
          </BlockStack>
        </Layout.Section>
        <Layout.Section variant="oneThird">
          <Card>
            <Form onSubmit={submit}>
              <FormLayout>
                <Text as="h2" variant="headingMd">Give a placement a strategy bandit</Text>
                <FormFailure sub={sub} />
                <TextField label="Placement" value={placement} onChange={setPlacement} autoComplete="off"
                  error={fieldError(sub.errors, "placement")}
                  helpText={known.length ? `Placements with a model: ${known.join(", ")}` : undefined} />
                <Select label="Policy" value={policy} onChange={setPolicy}
                  options={["thompson", "ucb1", "epsilon_greedy"].map((p) => ({ label: p, value: p }))} />
                <TextField label="Exploration floor" value={floor} onChange={setFloor} autoComplete="off"
                  error={fieldError(sub.errors, "floor")} />
                <BlockStack gap="100">
                  {STRATEGIES.map((s) => (
                    <Checkbox key={s} label={s} checked={chosen.includes(s)}
                      onChange={(on) => setChosen(on ? [...chosen, s] : chosen.filter((x) => x !== s))} />
                  ))}
                  {fieldError(sub.errors, "strategies") && <Text as="p" tone="critical">{fieldError(sub.errors, "strategies")}</Text>}
                </BlockStack>
                <Button submit variant="primary" loading={sub.busy}>Save</Button>
              </FormLayout>
            </Form>
          </Card>
        </Layout.Section>
      </Layout>
    </Page>
  );
}
