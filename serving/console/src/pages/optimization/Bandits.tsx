// Optimization > Bandits: every bandit (the strategy bandits of placements marked; the Strategies
// page manages those), the selected one's arm allocation (share of pulls), learned
// means and reward over time, choosing an arm for a user, and creating a bandit.
// The API keeps a bandit's current state only (GET /v1/bandits/{id}); the reward-over-time chart is
// sampled from it every few seconds while the page is open.
import {
  Badge,
  BlockStack,
  Button,
  Card,
  Form,
  FormLayout,
  InlineStack,
  Layout,
  Page,
  Select,
  Text,
  TextField,
} from "@shopify/polaris";
import { useEffect, useState } from "react";
import { ApiError } from "../../api";
import { extra, POLICIES, type BanditDetail, type Choice } from "../../api/extra";
import { fmtValue, LoadError, Loading, Panel } from "../../components/common";
import { TimeSeriesChart } from "../../components/TimeSeriesChart";
import { useApi, usePoll } from "../../hooks";
import { navigate } from "../../router";
import { ActionError, FormFailure, fieldError, pct, useSubmission, when } from "../forms";
import type { PageProps } from "../types";
import { EMPTY_BANDIT, allocation, appendSample, banditDoc, parseContext, sampleOf, type Sample } from "./banditForm";

export const PATH = "/optimization/bandits";
const REFRESH_MS = 5000;

export function CreateBandit({ onCreated }: { onCreated: (id: string) => void }) {
  const [v, setV] = useState(EMPTY_BANDIT);
  const sub = useSubmission();
  const set = (k: keyof typeof v) => (value: string) => setV({ ...v, [k]: value });
  const submit = async () => {
    const { doc, errors } = banditDoc(v);
    const made = await sub.submit(() => errors, () => extra.bandits.create(doc));
    if (made) {
      setV(EMPTY_BANDIT);
      onCreated(made.id);
    }
  };
  return (
    <Form onSubmit={submit}>
      <FormLayout>
        <FormFailure sub={sub} />
        <TextField label="Bandit id" value={v.id} onChange={set("id")} autoComplete="off" error={fieldError(sub.errors, "id")}
          helpText="Letters, digits, '_', '.', '-'" />
        <Select label="Policy" options={POLICIES.map((p) => ({ label: p, value: p }))} value={v.policy}
          onChange={set("policy")} error={fieldError(sub.errors, "policy")} />
        <TextField label="Arms" value={v.arms} onChange={set("arms")} autoComplete="off"
          error={fieldError(sub.errors, "arms")} helpText="Comma-separated, e.g. summer, sale, new-in" />
        <FormLayout.Group condensed>
          <TextField label="Exploration floor" value={v.floor} onChange={set("floor")} autoComplete="off"
            error={fieldError(sub.errors, "floor")} helpText="[0, 0.5]" />
          <TextField label="Discount" value={v.discount} onChange={set("discount")} autoComplete="off"
            error={fieldError(sub.errors, "discount")} helpText="[0.5, 1]; empty: 1" />
        </FormLayout.Group>
        {v.policy === "linucb" && (
          <TextField label="Features" value={v.features} onChange={set("features")} autoComplete="off"
            error={fieldError(sub.errors, "features")} helpText="Context names: 'visits' numeric, 'device=mobile' one-hot" />
        )}
        <Button submit variant="primary" loading={sub.busy}>
          Create bandit
        </Button>
      </FormLayout>
    </Form>
  );
}

export function ChooseArm({ banditId }: { banditId: string }) {
  const [user, setUser] = useState("");
  const [context, setContext] = useState("");
  const [choice, setChoice] = useState<Choice | null>(null);
  const sub = useSubmission();
  const submit = async () => {
    const ctx = parseContext(context);
    const got = await sub.submit(
      () => ({
        ...(user.trim() ? {} : { user_id: "a user id" }),
        ...(ctx.error ? { context: ctx.error } : {}),
      }),
      () => extra.bandits.choose(banditId, { user_id: user.trim(), ...(ctx.context ? { context: ctx.context } : {}) }),
    );
    setChoice(got ?? null);
  };
  return (
    <Form onSubmit={submit}>
      <FormLayout>
        <FormFailure sub={sub} />
        <FormLayout.Group condensed>
          <TextField label="User id" value={user} onChange={setUser} autoComplete="off" error={fieldError(sub.errors, "user_id")} />
          <TextField label="Context (JSON, optional)" value={context} onChange={setContext} autoComplete="off"
            placeholder='{"device": "mobile"}' error={fieldError(sub.errors, "context")} />
        </FormLayout.Group>
        <Button submit loading={sub.busy}>
          Choose
        </Button>
        {choice && (
          <div data-testid="choice">
            <Text as="p">
              Arm <strong data-testid="chosen-arm">{choice.arm}</strong>{" "}
              {choice.explore ? <Badge tone="attention">explored</Badge> : <Badge tone="info">exploited</Badge>} · decision{" "}
              <code>{choice.decision_id}</code>
            </Text>
            <Text as="p" tone="subdued">
              Send the decision id back as recommendation_id on the click or purchase: that is the reward.
            </Text>
          </div>
        )}
      </FormLayout>
    </Form>
  );
}

function AllocationBars({ detail }: { detail: BanditDetail }) {
  const share = allocation(detail.arms);
  return (
    <table className="aura-table" data-testid="arm-allocation">
      <thead>
        <tr>
          <th>Arm</th>
          <th>Allocation (share of pulls)</th>
          <th className="num">Pulls</th>
          <th className="num">Reward</th>
          <th className="num">Mean</th>
        </tr>
      </thead>
      <tbody>
        {detail.arms.map((a) => (
          <tr key={a.arm}>
            <td>
              {a.arm} {!a.active && <Badge>removed</Badge>}
            </td>
            <td style={{ minWidth: 140 }}>
              <div style={{ display: "flex", alignItems: "center", gap: 6 }}>
                <div style={{ flex: 1, background: "var(--p-color-bg-fill-secondary, #eee)", height: 10, borderRadius: 5 }}>
                  <div style={{ width: `${(share[a.arm] * 100).toFixed(1)}%`, background: "#2c6ecb", height: 10, borderRadius: 5 }} />
                </div>
                <span style={{ minWidth: 48, textAlign: "right" }}>{pct(share[a.arm])}</span>
              </div>
            </td>
            <td className="num">{fmtValue(a.pulls)}</td>
            <td className="num">{fmtValue(a.reward)}</td>
            <td className="num">{a.mean.toFixed(4)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function BanditPanel({ banditId, onDeleted }: { banditId: string; onDeleted: () => void }) {
  const detail = usePoll(() => extra.bandits.get(banditId), REFRESH_MS, [banditId]);
  const [history, setHistory] = useState<Sample[]>([]);
  const [actionError, setActionError] = useState<ApiError | null>(null);
  useEffect(() => setHistory([]), [banditId]);
  useEffect(() => {
    const d = detail.data;
    if (d && detail.at) setHistory((h) => appendSample(h, sampleOf(detail.at as number, d.arms, d.pulls, d.rewards)));
  }, [detail.data, detail.at]);
  const act = async (fn: () => Promise<unknown>, after?: () => void) => {
    setActionError(null);
    try {
      await fn();
      after?.();
      detail.reload();
    } catch (exc) {
      setActionError(exc instanceof ApiError ? exc : new ApiError(0, String(exc)));
    }
  };
  const d = detail.data;
  return (
    <BlockStack gap="400">
      <Card>
        <BlockStack gap="300">
          <InlineStack align="space-between" blockAlign="center">
            <Text as="h2" variant="headingMd">
              {banditId}
            </Text>
            <InlineStack gap="200">
              <Button onClick={() => act(() => extra.bandits.reset(banditId))}>Reset learning</Button>
              <Button tone="critical" onClick={() => act(() => extra.bandits.remove(banditId), onDeleted)}>
                Delete
              </Button>
            </InlineStack>
          </InlineStack>
          <ActionError error={actionError} />
          <LoadError error={detail.error} />
          <Loading loading={detail.loading && !d}>
            {d && (
              <BlockStack gap="200">
                <Text as="p" tone="subdued">
                  {d.config.policy} · {fmtValue(d.pulls)} pulls · {fmtValue(d.rewards)} rewards · floor{" "}
                  {fmtValue(d.config.floor ?? 0)} · created {when(d.config.created_at)}
                </Text>
                {d.quarantine && (
                  <Text as="p" tone="critical">
                    Quarantined: {JSON.stringify(d.quarantine)} (reset to clear)
                  </Text>
                )}
                <AllocationBars detail={d} />
              </BlockStack>
            )}
          </Loading>
        </BlockStack>
      </Card>
      <Panel title="Reward over time">
        <Text as="p" tone="subdued">
          Mean reward per arm, sampled every {REFRESH_MS / 1000} s since this page opened.
        </Text>
        <TimeSeriesChart
          title="mean reward per arm"
          x="t"
          data={history}
          series={(d?.arms ?? []).map((a) => ({ key: `mean:${a.arm}`, label: a.arm }))}
          format={(v) => v.toFixed(3)}
        />
        <TimeSeriesChart title="pulls and rewards" x="t" data={history}
          series={[{ key: "pulls", label: "pulls" }, { key: "rewards", label: "rewards" }]} height={140} />
      </Panel>
      <Panel title="Choose an arm for a user">
        <ChooseArm banditId={banditId} />
      </Panel>
    </BlockStack>
  );
}

export function Bandits({ route }: PageProps) {
  const list = useApi(() => extra.bandits.list(), []);
  const selected = route.params.get("id");
  const [filter, setFilter] = useState("");
  const bandits = (list.data?.bandits ?? []).filter((b) => b.id.toLowerCase().includes(filter.trim().toLowerCase()));
  return (
    <Page title="Bandits" subtitle="Multi-armed bandits: where each puts its traffic and what it earns" fullWidth>
      <Layout>
        <Layout.Section variant="oneThird">
          <BlockStack gap="400">
            <Panel title="Bandits">
              <TextField label="Filter" labelHidden placeholder="Filter by id" value={filter} onChange={setFilter} autoComplete="off" />
              <LoadError error={list.error} />
              <Loading loading={list.loading && !list.data}>
                {bandits.length === 0 ? (
                  <Text as="p" tone="subdued">
                    No bandits yet.
                  </Text>
                ) : (
                  <div style={{ maxHeight: 360, overflowY: "auto" }}>
                  <table className="aura-table" data-testid="bandit-list">
                    <tbody>
                      {bandits.map((b) => (
                        <tr key={b.id}>
                          <td>
                            <a href={`#${PATH}?id=${encodeURIComponent(b.id)}`}>{b.id}</a>
                            {b.id.startsWith("strategy.") && <> <Badge tone="info">strategy</Badge></>}
                            {b.id === selected && " ←"}
                          </td>
                          <td>{b.policy ?? "thompson"}</td>
                          <td className="num">{b.arms.length} arms</td>
                        </tr>
                      ))}
                    </tbody>
                  </table>
                  </div>
                )}
              </Loading>
            </Panel>
            <Panel title="New bandit">
              <CreateBandit
                onCreated={(id) => {
                  list.reload();
                  navigate(PATH, { id });
                }}
              />
            </Panel>
          </BlockStack>
        </Layout.Section>
        <Layout.Section>
          {selected ? (
            <BanditPanel banditId={selected} onDeleted={() => {
              list.reload();
              navigate(PATH);
            }} />
          ) : (
            <Card>
              <Text as="p" tone="subdued">
                Pick a bandit to see its arms, or create one.
              </Text>
            </Card>
          )}
        </Layout.Section>
      </Layout>
    </Page>
  );
}
