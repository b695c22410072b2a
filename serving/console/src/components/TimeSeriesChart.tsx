// A small time-series line chart (Recharts, SVG): x is epoch milliseconds, one line per series.
// Its width follows the container (ResizeObserver); the latest value of each series is also shown as
// text, so the numbers are readable without hovering and on narrow screens.
import { useEffect, useRef, useState } from "react";
import { CartesianGrid, Line, LineChart, Tooltip, XAxis, YAxis } from "recharts";

export interface Series {
  key: string;
  label: string;
  color?: string;
}

export interface TimeSeriesChartProps {
  data: Record<string, number | null | undefined>[];
  series: Series[];
  /** the field of each point holding its time (epoch ms) */
  x?: string;
  height?: number;
  /** formats a value for the axis, the tooltip and the latest-value line */
  format?: (v: number) => string;
  title?: string;
}

const PALETTE = ["#2c6ecb", "#e07b00", "#008060", "#8a2be2", "#d72c0d"];

export function formatTime(ms: number): string {
  const d = new Date(ms);
  return `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
}

export function latest(data: Record<string, number | null | undefined>[], key: string): number | null {
  for (let i = data.length - 1; i >= 0; i--) {
    const v = data[i][key];
    if (typeof v === "number" && Number.isFinite(v)) return v;
  }
  return null;
}

export function TimeSeriesChart({ data, series, x = "start", height = 180, format, title }: TimeSeriesChartProps) {
  const box = useRef<HTMLDivElement>(null);
  const [width, setWidth] = useState(480);
  useEffect(() => {
    const el = box.current;
    if (!el || typeof ResizeObserver === "undefined") return;
    const ro = new ResizeObserver((entries) => {
      const w = Math.floor(entries[0].contentRect.width);
      if (w > 0) setWidth(w);
    });
    ro.observe(el);
    return () => ro.disconnect();
  }, []);
  const fmt = format ?? ((v: number) => (Number.isInteger(v) ? String(v) : v.toFixed(2)));
  return (
    <div ref={box} className="aura-chart" role="figure" aria-label={title ?? series.map((s) => s.label).join(", ")}>
      <div className="aura-chart-latest">
        {series.map((s, i) => {
          const v = latest(data, s.key);
          return (
            <span key={s.key} data-series={s.key} style={{ color: s.color ?? PALETTE[i % PALETTE.length] }}>
              {s.label}: <strong>{v === null ? "–" : fmt(v)}</strong>
            </span>
          );
        })}
      </div>
      {data.length === 0 ? (
        <p className="aura-chart-empty">No data in this window yet.</p>
      ) : (
        <LineChart width={width} height={height} data={data} margin={{ top: 8, right: 12, bottom: 4, left: 0 }}>
          <CartesianGrid strokeDasharray="3 3" opacity={0.4} />
          <XAxis dataKey={x} tickFormatter={(v: number) => formatTime(v)} minTickGap={24} fontSize={11} />
          <YAxis tickFormatter={(v: number) => fmt(v)} width={48} fontSize={11} />
          <Tooltip labelFormatter={(v) => new Date(Number(v)).toLocaleString()} formatter={(v) => fmt(Number(v))} />
          {series.map((s, i) => (
            <Line
              key={s.key}
              type="monotone"
              dataKey={s.key}
              name={s.label}
              stroke={s.color ?? PALETTE[i % PALETTE.length]}
              dot={false}
              isAnimationActive={false}
            />
          ))}
        </LineChart>
      )}
    </div>
  );
}
