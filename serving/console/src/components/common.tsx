// Small pieces every page uses: an error callout for one failed load, a loading/empty state, a titled
// panel, a table of counts and a JSON-ish key/value list.
import { Banner, BlockStack, Card, DescriptionList, InlineStack, SkeletonBodyText, Text } from "@shopify/polaris";
import type { ReactNode } from "react";
import type { ApiError } from "../api";

export function LoadError({ error, title }: { error: ApiError | null; title?: string }) {
  if (!error) return null;
  return (
    <Banner tone="critical" title={title ?? `Could not load (${error.status || "no answer"})`}>
      <p>{error.message}</p>
    </Banner>
  );
}

export function Loading({ loading, children }: { loading: boolean; children: ReactNode }) {
  return loading ? <SkeletonBodyText lines={3} /> : <>{children}</>;
}

export function fmtValue(v: unknown): string {
  if (v === null || v === undefined) return "–";
  if (typeof v === "number") return Number.isInteger(v) ? v.toLocaleString() : v.toFixed(3);
  if (typeof v === "string") return v;
  return JSON.stringify(v);
}

export function KeyValues({ data, keys }: { data: Record<string, unknown>; keys?: string[] }) {
  const items = (keys ?? Object.keys(data))
    .filter((k) => k in data)
    .map((k) => ({ term: k.replace(/_/g, " "), description: fmtValue(data[k]) }));
  if (items.length === 0) return <Text as="p" tone="subdued">Nothing recorded.</Text>;
  return <DescriptionList items={items} gap="tight" />;
}

export function msAgo(ms: number | null | undefined): string {
  if (!ms) return "–";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 90) return `${s} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 129600) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

/** A titled card: heading (with optional actions on its right), the load error of its data, and
 * its content behind a loading state while the first answer is awaited. */
export function Panel({
  title,
  actions,
  error,
  errorTitle,
  loading,
  gap = "200",
  children,
}: {
  title: ReactNode;
  actions?: ReactNode;
  error?: ApiError | null;
  errorTitle?: string;
  loading?: boolean;
  gap?: "100" | "200" | "300" | "400";
  children?: ReactNode;
}) {
  const heading = (
    <Text as="h2" variant="headingMd">
      {title}
    </Text>
  );
  return (
    <Card>
      <BlockStack gap={gap}>
        {actions ? (
          <InlineStack gap="200" align="space-between" blockAlign="center">
            {heading}
            {actions}
          </InlineStack>
        ) : (
          heading
        )}
        {error !== undefined && <LoadError error={error} title={errorTitle} />}
        {loading === undefined ? children : <Loading loading={loading}>{children}</Loading>}
      </BlockStack>
    </Card>
  );
}

/** A two-column table of named counts, largest first when `sorted`. */
export function CountTable({
  counts,
  sorted = false,
  testid,
}: {
  counts: Record<string, number>;
  sorted?: boolean;
  testid?: string;
}) {
  const rows = Object.entries(counts);
  if (sorted) rows.sort((a, b) => b[1] - a[1]);
  return (
    <table className="aura-table" data-testid={testid}>
      <tbody>
        {rows.map(([k, v]) => (
          <tr key={k}>
            <td>{k}</td>
            <td className="num">{v.toLocaleString()}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
