// Small pieces every page uses: an error callout for one failed load, a loading/empty state and a
// JSON-ish key/value list.
import { Banner, DescriptionList, SkeletonBodyText, Text } from "@shopify/polaris";
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
