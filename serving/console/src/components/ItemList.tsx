// A ranked list of items with their scores and, for recommendations, the source of each item.
import { Badge, InlineStack, Text } from "@shopify/polaris";

export interface ListedItem {
  item_id: string;
  score: number;
  sources?: string[];
}

export function ItemList({ items, testId }: { items: ListedItem[]; testId?: string }) {
  if (items.length === 0) {
    return (
      <Text as="p" tone="subdued">
        No items.
      </Text>
    );
  }
  const showSources = items.some((i) => i.sources);
  return (
    <div className="aura-scroll">
      <table className="aura-table" data-testid={testId}>
        <thead>
          <tr>
            <th>#</th>
            <th>Item</th>
            <th className="num">Score</th>
            {showSources && <th>Source</th>}
          </tr>
        </thead>
        <tbody>
          {items.map((it, i) => (
            <tr key={`${it.item_id}-${i}`}>
              <td>{i + 1}</td>
              <td>
                <a href={`#/recommendations?item=${encodeURIComponent(it.item_id)}`}>{it.item_id}</a>
              </td>
              <td className="num">{it.score.toFixed(4)}</td>
              {showSources && (
                <td>
                  <InlineStack gap="100">
                    {(it.sources ?? []).map((s) => (
                      <Badge key={s}>{s}</Badge>
                    ))}
                  </InlineStack>
                </td>
              )}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
