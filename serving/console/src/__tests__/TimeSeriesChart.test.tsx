import { render, screen } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { latest, TimeSeriesChart } from "../components/TimeSeriesChart";

const t0 = Date.UTC(2026, 0, 1, 12, 0);
const data = [0, 1, 2, 3].map((i) => ({ start: t0 + i * 60_000, eps: i * 1.5, active: 10 + i }));

describe("TimeSeriesChart", () => {
  it("draws one line per series with a point per bucket", () => {
    const { container } = render(
      <TimeSeriesChart
        data={data}
        series={[
          { key: "eps", label: "events/s" },
          { key: "active", label: "active users" },
        ]}
      />,
    );
    const lines = container.querySelectorAll("path.recharts-line-curve");
    expect(lines.length).toBe(2);
    for (const line of lines) {
      const d = line.getAttribute("d") ?? "";
      expect(d.startsWith("M")).toBe(true);
      expect((d.match(/[LC]/g) ?? []).length).toBeGreaterThanOrEqual(3); // 4 points: 3 segments
    }
  });

  it("shows the latest value of each series as text", () => {
    render(<TimeSeriesChart data={data} series={[{ key: "eps", label: "events/s" }]} />);
    expect(screen.getByText("events/s:").textContent).toContain("4.50");
  });

  it("says when the window has no data instead of drawing an empty frame", () => {
    const { container } = render(<TimeSeriesChart data={[]} series={[{ key: "eps", label: "events/s" }]} />);
    expect(screen.getByText(/No data in this window/)).toBeTruthy();
    expect(container.querySelector("svg")).toBeNull();
  });

  it("latest skips missing values", () => {
    expect(latest([{ a: 1 }, { a: 2 }, { a: null }], "a")).toBe(2);
    expect(latest([], "a")).toBeNull();
  });
});
