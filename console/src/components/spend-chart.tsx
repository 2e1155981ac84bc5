import type { CallEntry } from '../api';
import { usd } from '../format';

const WIDTH = 640;
const HEIGHT = 180;
const PAD = { left: 56, right: 12, top: 12, bottom: 24 };

/**
 * Cumulative spend over time, one step per costed call, with the cap as a line: plain SVG, no
 * chart library (a few hundred bytes instead of tens of kilobytes).
 */
export function SpendChart({ calls, cap }: { calls: readonly CallEntry[]; cap: number | null }) {
  // By time, not by seq: concurrent calls are chained in the order they finish, not start.
  const timed = calls
    .map((call) => ({ t: Date.parse(call.at), cost: call.cost_usd }))
    .filter((call) => Number.isFinite(call.t))
    .sort((a, b) => a.t - b.t);
  const points: { t: number; total: number }[] = [];
  let total = 0;
  for (const call of timed) {
    total += call.cost;
    points.push({ t: call.t, total });
  }
  if (points.length === 0) return <p class="muted">No calls yet.</p>;
  const first = points[0]?.t ?? 0;
  const last = Math.max(points.at(-1)?.t ?? first, first + 1000);
  const top = Math.max(total, cap ?? 0) * 1.05 || 1;
  const x = (t: number): number => PAD.left + ((t - first) / (last - first)) * (WIDTH - PAD.left - PAD.right);
  const y = (v: number): number => HEIGHT - PAD.bottom - (v / top) * (HEIGHT - PAD.top - PAD.bottom);
  let path = `M${x(first).toFixed(1)},${y(0).toFixed(1)}`;
  let previous = 0;
  for (const point of points) {
    // A step: spend holds until the next call settles.
    path += `L${x(point.t).toFixed(1)},${y(previous).toFixed(1)}L${x(point.t).toFixed(1)},${y(point.total).toFixed(1)}`;
    previous = point.total;
  }
  return (
    <svg
      class="spend-chart"
      viewBox={`0 0 ${WIDTH} ${HEIGHT}`}
      role="img"
      aria-label={`spend over time: ${usd(total)} over ${points.length} calls`}
      data-total={total}
      data-points={points.length}
    >
      <line class="axis" x1={PAD.left} y1={y(0)} x2={WIDTH - PAD.right} y2={y(0)} />
      <line class="axis" x1={PAD.left} y1={PAD.top} x2={PAD.left} y2={y(0)} />
      {cap !== null && (
        <>
          <line class="cap-line" x1={PAD.left} y1={y(cap)} x2={WIDTH - PAD.right} y2={y(cap)} />
          <text class="tick" x={PAD.left - 4} y={y(cap) + 4} text-anchor="end">
            {usd(cap)}
          </text>
        </>
      )}
      <text class="tick" x={PAD.left - 4} y={y(0) + 4} text-anchor="end">
        $0
      </text>
      <text class="tick" x={PAD.left} y={HEIGHT - 6}>
        {new Date(first).toLocaleTimeString(undefined, { hour12: false })}
      </text>
      <text class="tick" x={WIDTH - PAD.right} y={HEIGHT - 6} text-anchor="end">
        {new Date(last).toLocaleTimeString(undefined, { hour12: false })}
      </text>
      <path class="spend-line" d={path} />
    </svg>
  );
}
