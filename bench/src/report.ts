import type { Comparison, Ratio } from './against.js';
import type { CapRaceResult } from './cap-race.js';
import type { LoadResult } from './load.js';

export interface VariantReport {
  readonly name: string;
  readonly route: 'payment_intents' | 'chat';
  readonly description: string;
  /** Why it did not run, when it did not. */
  readonly skipped?: string;
  /**
   * `peak`: the highest req/s with p99 under 50 ms. `throughput` (side by side only): the highest
   * req/s of the peak runs whatever their p99, which a busy machine pushes past 50 ms for both.
   */
  readonly runs: Partial<Record<'sequential' | 'rate500' | 'rate2000' | 'peak' | 'throughput', LoadResult>>;
  readonly cpuSecondsPer1000: number | null;
  readonly peakRssMb: number | null;
}

export interface BenchReport {
  readonly date: string;
  readonly mode: 'quick' | 'full';
  readonly machine: Record<string, string | number>;
  readonly settings: Record<string, unknown>;
  readonly variants: VariantReport[];
  readonly capRace: { readonly embedded: CapRaceResult; readonly redis: CapRaceResult };
  /** With `--against`: the working tree's proxy against the previous commit's, side by side. */
  readonly comparison?: Comparison;
}

const fixed = (value: number | undefined, digits = 2): string => (value === undefined ? '–' : value.toFixed(digits));

function floor(report: BenchReport, route: VariantReport['route']): VariantReport | undefined {
  return report.variants.find(
    (variant) => variant.name.startsWith('direct') && variant.route === route && !variant.skipped,
  );
}

/** Latency a variant adds over direct on its route, in ms. */
export function added(
  report: BenchReport,
  variant: VariantReport,
  run: 'sequential' | 'rate500' | 'rate2000',
  field: 'p50' | 'p99' | 'p999',
): number | undefined {
  const base = floor(report, variant.route)?.runs[run]?.[field];
  const value = variant.runs[run]?.[field];
  return base === undefined || value === undefined ? undefined : value - base;
}

function row(report: BenchReport, variant: VariantReport): string {
  if (variant.skipped)
    return `| ${variant.name} | ${variant.route} | did not run: ${variant.skipped.replace(/\|/g, '/')} |||||||||`;
  const nginx = report.variants.find((v) => v.name === 'nginx' && !v.skipped);
  const node = report.variants.find((v) => v.name === 'node pass-through' && !v.skipped);
  const direct = floor(report, variant.route);
  const isFloor = variant === direct;
  const cell = (run: 'sequential' | 'rate500' | 'rate2000', field: 'p50' | 'p99' | 'p999'): string =>
    isFloor ? fixed(variant.runs[run]?.[field]) : fixed(added(report, variant, run, field));
  const overNginx = (): string => {
    const own = added(report, variant, 'rate2000', 'p50');
    const reference = nginx ? added(report, nginx, 'rate2000', 'p50') : undefined;
    return own === undefined || reference === undefined || reference <= 0 || isFloor
      ? '–'
      : `${(own / reference).toFixed(1)}×`;
  };
  const peak = variant.runs.peak?.requestsPerSecond;
  const ratio = (other: VariantReport | undefined): string => {
    const reference = other?.runs.peak?.requestsPerSecond;
    return peak === undefined || reference === undefined ? '–' : `${((peak / reference) * 100).toFixed(0)}%`;
  };
  return `| ${variant.name} | ${variant.route} | ${cell('sequential', 'p50')} | ${cell('rate500', 'p50')} / ${cell('rate500', 'p99')} / ${cell('rate500', 'p999')} | ${cell('rate2000', 'p50')} / ${cell('rate2000', 'p99')} / ${cell('rate2000', 'p999')} | ${overNginx()} | ${peak === undefined ? 'p99 ≥ 50 ms' : peak.toFixed(0)} | ${ratio(direct)} | ${ratio(node)} | ${variant.cpuSecondsPer1000 === null ? '–' : variant.cpuSecondsPer1000.toFixed(3)} | ${variant.peakRssMb === null ? '–' : variant.peakRssMb.toFixed(0)} |`;
}

function raceRow(name: string, race: CapRaceResult): string {
  return `| ${name} | ${race.calls} | $${race.capUsd.toFixed(2)} | ${race.forwarded} | $${race.forwardedUsd.toFixed(2)} | $${race.overshootUsd.toFixed(2)} | $${race.underUseUsd.toFixed(2)} | ${race.smallestRefusedUsd === null ? '–' : `$${race.smallestRefusedUsd.toFixed(2)}`} | ${race.seconds.toFixed(1)} s |`;
}

function ratioCell(figure: Ratio, digits: number): string {
  const value = (x: number | null): string => (x === null ? '–' : x.toFixed(digits));
  return `${value(figure.current)} / ${value(figure.previous)} / ${figure.ratio === null ? '–' : `${figure.ratio.toFixed(2)}×`}`;
}

/** The `--against` table: each store's figures for the working tree and the previous commit. */
export function comparisonLines(comparison: Comparison): string[] {
  return [
    `Side by side with ${comparison.ref} (${comparison.commit}): same upstream and load generator, runs interleaved, each figure the median of ${comparison.rounds} round${comparison.rounds > 1 ? 's' : ''}. Ratio = working tree / previous: under 1× is faster for added latency, over 1× is faster for peak req/s.`,
    '',
    '| store | variants | added p50, sequential (ms): current / previous / ratio | peak req/s (any p99): current / previous / ratio |',
    '| --- | --- | --- | --- |',
    ...comparison.stores.map(
      (store) =>
        `| ${store.store} | ${store.current} vs ${store.previous} | ${ratioCell(store.addedP50SequentialMs, 3)} | ${ratioCell(store.peakRequestsPerSecond, 0)} |`,
    ),
  ];
}

/** The generated section of docs/benchmarks.md: run facts and the two tables. */
export function renderMarkdown(report: BenchReport): string {
  const lines = [
    `Run: ${report.date} (${report.mode}); ${report.machine.cores} cores (${report.machine.cpu}), ${report.machine.memoryGb} GiB, Node ${report.machine.node}, Linux ${report.machine.kernel}; ${String(report.machine.note)}. ${String(report.settings.secondsPerRun)} s per run. fsync of a 4 KiB write in the data directory: p50 ${String(report.machine.fsyncP50Ms)} ms, p99 ${String(report.machine.fsyncP99Ms)} ms (Keybrake makes two durable commits per call).`,
    '',
    'Latency in ms. For `direct` rows the absolute latency; for every other row the latency **added** over direct on the same route (p50 / p99 / p99.9). "vs nginx" is the added p50 at 2,000 req/s as a multiple of nginx\'s. Peak: highest req/s with p99 under 50 ms. CPU and RSS: the variant\'s own processes (and its Redis), not the upstream or the load generator.',
    '',
    '| variant | route | sequential p50 | @500 req/s p50 / p99 / p99.9 | @2,000 req/s p50 / p99 / p99.9 | vs nginx | peak req/s | peak vs direct | peak vs node | CPU s / 1k req | peak RSS MB |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...report.variants.map((variant) => row(report, variant)),
    '',
    'Cap race: 2,000 concurrent charges of $1.00-$5.00 at one key with a $300 cap.',
    '',
    '| store | calls | cap | forwarded | forwarded $ | overshoot | under-use | smallest refused | time |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    raceRow('embedded', report.capRace.embedded),
    raceRow('Redis, 2 replicas', report.capRace.redis),
    ...(report.comparison ? ['', ...comparisonLines(report.comparison)] : []),
  ];
  return lines.join('\n');
}

/** A bar chart of added p50 and p99 at 2,000 req/s per variant. */
export function renderSvg(report: BenchReport): string {
  const bars = report.variants
    .filter((variant) => !variant.skipped && !variant.name.startsWith('direct'))
    .map((variant) => ({
      name: variant.name,
      p50: Math.max(0, added(report, variant, 'rate2000', 'p50') ?? 0),
      p99: Math.max(0, added(report, variant, 'rate2000', 'p99') ?? 0),
    }));
  // Log scale: the peers' overheads are hundreds of times Keybrake's and nginx's.
  const log = (ms: number): number => Math.log10(1 + ms);
  const max = Math.max(1, ...bars.map((bar) => log(bar.p99)));
  const rowHeight = 34;
  const left = 170;
  const width = 720;
  const scale = (width - left - 80) / max;
  const height = 60 + bars.length * rowHeight;
  const body = bars
    .map((bar, i) => {
      const y = 40 + i * rowHeight;
      return [
        `<text x="${left - 8}" y="${y + 14}" text-anchor="end">${bar.name}</text>`,
        `<rect x="${left}" y="${y}" width="${(log(bar.p99) * scale).toFixed(1)}" height="12" fill="#f4a261"/>`,
        `<rect x="${left}" y="${y + 14}" width="${(log(bar.p50) * scale).toFixed(1)}" height="12" fill="#2a9d8f"/>`,
        `<text x="${left + log(bar.p99) * scale + 6}" y="${y + 10}">${bar.p99.toFixed(2)} ms p99</text>`,
        `<text x="${left + log(bar.p50) * scale + 6}" y="${y + 24}">${bar.p50.toFixed(2)} ms p50</text>`,
      ].join('\n');
    })
    .join('\n');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">
<text x="10" y="20" font-size="14">Latency added over direct at 2,000 req/s, log scale (${report.date.slice(0, 10)}, ${report.mode} run, ${report.machine.cores} cores)</text>
${body}
</svg>
`;
}
