/**
 * `pnpm bench [--quick] [--against <git-ref>] [--rounds=N]`: every variant against one mock
 * upstream with one load generator (autocannon), then the cap race. Writes
 * bench/results/<date>.json, docs/benchmarks.md and docs/benchmarks-latency.svg.
 *
 * `--against <git-ref>` also builds that commit (see against.ts) and runs its proxy as
 * `keybrake@<commit> embedded` / `redis` beside the working tree's `keybrake embedded` / `redis`:
 * both started together, each run of one alternating with the same run of the other, `--rounds`
 * times (default 3 with `--against`, else 1), and reports the ratios current / previous.
 */
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { cpus, release, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { capRace, type CapRaceResult } from './cap-race.js';
import { runLoad, type LoadOptions, type LoadResult } from './load.js';
import { cpuSeconds, peakRssBytes, processTree, resetPeakRss, startService, type Service } from './processes.js';
import { buildRef, compare, previousName, type BuiltRef } from './against.js';
import { added, renderMarkdown, renderSvg, type BenchReport, type VariantReport } from './report.js';
import {
  DIST,
  ROOT,
  VARIANTS,
  issueBenchKey,
  keybrake,
  startKeybrake,
  startRedis,
  type RunningVariant,
  type Variant,
} from './variants.js';

const quick = process.argv.includes('--quick');
const only = process.argv
  .find((arg) => arg.startsWith('--only='))
  ?.slice('--only='.length)
  .split(',');
/** `--name value` or `--name=value`. */
function option(name: string): string | undefined {
  const index = process.argv.indexOf(name);
  if (index >= 0) return process.argv[index + 1];
  return process.argv.find((arg) => arg.startsWith(`${name}=`))?.slice(name.length + 1);
}
const againstRef = option('--against');
const rounds = Number(option('--rounds') ?? (againstRef === undefined ? 1 : 3));
if (!Number.isInteger(rounds) || rounds < 1)
  throw new Error(`--rounds must be a whole number ≥ 1, not ${option('--rounds')}`);
/**
 * The open-loop generator for the fixed-rate runs (oha, `KEYBRAKE_OHA_BIN`, installed by
 * scripts/bench.sh): always in a full run; in a quick one (CI, where a cold cargo build of oha
 * does not fit) only with `--oha`.
 */
const ohaBin = !quick || process.argv.includes('--oha') ? process.env.KEYBRAKE_OHA_BIN : undefined;
if ((!quick || process.argv.includes('--oha')) && !ohaBin)
  throw new Error(
    'KEYBRAKE_OHA_BIN is not set: run the benchmark as `pnpm bench` (scripts/install-bench.sh --oha installs oha)',
  );
const seconds = quick ? 2 : 10;
const warmupSeconds = quick ? 1 : 3;
const peakConnections = quick ? [64] : [16, 64, 256];

type RunName = keyof VariantReport['runs'];

function log(message: string): void {
  process.stderr.write(`${message}\n`);
}

async function measure(
  variant: RunningVariant,
  options: LoadOptions,
): Promise<{ load: LoadResult; cpuSeconds: number; peakRssBytes: number }> {
  const pids = variant.services.flatMap((service) => (service.child.pid ? processTree(service.child.pid) : []));
  resetPeakRss(pids);
  const cpuBefore = cpuSeconds(pids);
  const load = await runLoad(variant.targets, options);
  return { load, cpuSeconds: cpuSeconds(pids) - cpuBefore, peakRssBytes: peakRssBytes(pids) };
}

/** The median of each figure over several runs of the same load (counts are summed). */
function median(loads: readonly LoadResult[]): LoadResult {
  if (loads.length === 1) return loads[0]!;
  const middle = (values: number[]): number => {
    values.sort((x, y) => x - y);
    const half = Math.floor(values.length / 2);
    return values.length % 2 === 1 ? values[half]! : (values[half - 1]! + values[half]!) / 2;
  };
  const sum = (field: 'requests' | 'errors' | 'non2xx' | 'durationSeconds'): number =>
    loads.reduce((total, load) => total + load[field], 0);
  return {
    requests: sum('requests'),
    requestsPerSecond: middle(loads.map((load) => load.requestsPerSecond)),
    p50: middle(loads.map((load) => load.p50)),
    p99: middle(loads.map((load) => load.p99)),
    p999: middle(loads.map((load) => load.p999)),
    errors: sum('errors'),
    non2xx: sum('non2xx'),
    durationSeconds: sum('durationSeconds'),
  };
}

/** One variant of a group, started, and what its runs cost so far. */
interface Contender {
  readonly variant: Variant;
  readonly running: RunningVariant;
  readonly loads: Partial<Record<RunName, LoadResult[]>>;
  cpu: number;
  requests: number;
  peakRss: number;
}

/**
 * Benchmarks the variants of a group side by side (a lone variant, or the working tree's proxy and
 * a previous commit's): every run of one is followed by the same run of the others, in an order
 * that alternates from run to run, so a drift of the machine's load falls on both alike.
 */
async function benchGroup(
  contenders: readonly Contender[],
): Promise<Omit<VariantReport, 'name' | 'route' | 'description'>[]> {
  for (const contender of contenders)
    await runLoad(contender.running.targets, { durationSeconds: warmupSeconds, connections: 16 });
  // Side by side, every figure is the median of `rounds` rounds; a lone variant runs once.
  const groupRounds = contenders.length > 1 ? rounds : 1;
  let turn = 0;
  /** One measured run of each contender; its cost counts towards the variant's CPU and memory figures. */
  const runEach = async (label: string, options: LoadOptions): Promise<LoadResult[]> => {
    const order = turn % 2 === 0 ? contenders : [...contenders].reverse();
    turn += 1;
    const results = new Map<Contender, LoadResult>();
    for (const contender of order) {
      const measured = await measure(contender.running, options);
      contender.cpu += measured.cpuSeconds;
      contender.requests += measured.load.requests;
      contender.peakRss = Math.max(contender.peakRss, measured.peakRssBytes);
      const load = measured.load;
      log(
        `  ${contender.variant.name} ${label}: ${load.requestsPerSecond.toFixed(0)} req/s, p50 ${load.p50} ms, p99 ${load.p99} ms, p99.9 ${load.p999} ms, errors ${load.errors + load.non2xx}`,
      );
      results.set(contender, load);
    }
    return contenders.map((contender) => results.get(contender)!);
  };
  const keep = (name: RunName, loads: readonly (LoadResult | undefined)[]): void => {
    loads.forEach((load, i) => {
      if (load) (contenders[i]!.loads[name] ??= []).push(load);
    });
  };
  for (let round = 1; round <= groupRounds; round += 1) {
    // Each run's order flips from round to round too (a round has an even number of runs).
    turn = round - 1;
    const suffix = groupRounds > 1 ? ` (round ${round}/${groupRounds})` : '';
    keep('sequential', await runEach(`sequential${suffix}`, { durationSeconds: seconds, connections: 1 }));
    keep(
      'rate500',
      await runEach(`rate500${suffix}`, { durationSeconds: seconds, connections: 32, rate: 500, oha: ohaBin }),
    );
    keep(
      'rate2000',
      await runEach(`rate2000${suffix}`, { durationSeconds: seconds, connections: 64, rate: 2000, oha: ohaBin }),
    );
    const peaks: (LoadResult | undefined)[] = contenders.map(() => undefined);
    const throughputs: (LoadResult | undefined)[] = contenders.map(() => undefined);
    for (const connections of peakConnections) {
      const loads = await runEach(`peak@${connections}${suffix}`, { durationSeconds: seconds, connections });
      loads.forEach((load, i) => {
        const best = peaks[i];
        if (load.p99 < 50 && (!best || load.requestsPerSecond > best.requestsPerSecond)) peaks[i] = load;
        const fastest = throughputs[i];
        if (!fastest || load.requestsPerSecond > fastest.requestsPerSecond) throughputs[i] = load;
      });
    }
    keep('peak', peaks);
    if (contenders.length > 1) keep('throughput', throughputs);
  }
  return contenders.map((contender) => {
    const runs: Partial<Record<RunName, LoadResult>> = {};
    for (const [name, loads] of Object.entries(contender.loads) as [RunName, LoadResult[]][])
      runs[name] = median(loads);
    const hasServices = contender.running.services.length > 0;
    return {
      runs,
      cpuSecondsPer1000: hasServices ? (contender.cpu / contender.requests) * 1000 : null,
      peakRssMb: hasServices ? contender.peakRss / 1024 / 1024 : null,
    };
  });
}

/** The mock upstream, as its own process. */
async function startUpstream(): Promise<{ service: Service; url: string }> {
  const service = await startService('upstream', process.execPath, [join(DIST, 'upstream.js'), '0'], {
    ready: /^listening/,
  });
  return { service, url: `http://127.0.0.1:${/listening (\d+)/.exec(service.output[0] ?? '')?.[1]}` };
}

/** The cap race on one store: Redis with 2 replicas, embedded as one process or as `workers` workers. */
async function raceOn(store: 'embedded' | 'redis', workers = 1): Promise<CapRaceResult> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-race-'));
  const stops: (() => Promise<void>)[] = [];
  try {
    const upstream = await startUpstream();
    stops.push(upstream.service.stop);
    const upstreamUrl = upstream.url;
    let redisUrl: string | undefined;
    if (store === 'redis') {
      const redis = await startRedis(dir);
      stops.push(redis.service.stop);
      redisUrl = redis.url;
    }
    const urls: string[] = [];
    for (let i = 0; i < (store === 'redis' ? 2 : 1); i += 1) {
      const replica = await startKeybrake(upstreamUrl, join(dir, `data-${i}`), redisUrl, undefined, workers);
      stops.push(replica.service.stop);
      urls.push(replica.url);
    }
    return await capRace(urls, await issueBenchKey(urls[0]!, 300), 300);
  } finally {
    for (const stop of stops.reverse()) await stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The durable stores' physical floor: one small write + fsync in the temp directory (where the
 * variants keep their data), in ms. Keybrake commits twice per call (reserve, settle).
 */
function fsyncLatency(): { p50: number; p99: number } {
  const dir = mkdtempSync(join(tmpdir(), 'bench-fsync-'));
  const fd = openSync(join(dir, 'probe'), 'w');
  const block = Buffer.alloc(4096, 1);
  const samples: number[] = [];
  for (let i = 0; i < 300; i += 1) {
    const started = performance.now();
    writeSync(fd, block, 0, block.length, 0);
    fsyncSync(fd);
    samples.push(performance.now() - started);
  }
  closeSync(fd);
  rmSync(dir, { recursive: true, force: true });
  samples.sort((a, b) => a - b);
  return { p50: samples[149]!, p99: samples[296]! };
}

/**
 * The variants to run, in groups benchmarked side by side: each alone, except that with
 * `--against` the working tree's single-replica proxy on each store is paired with the previous
 * commit's on the same store.
 */
function variantGroups(previous: BuiltRef | undefined): Variant[][] {
  const twinned: Record<string, 'embedded' | 'redis'> = { 'keybrake embedded': 'embedded', 'keybrake redis': 'redis' };
  return VARIANTS.filter((variant) => !only || only.some((name) => variant.name.includes(name))).map((variant) => {
    const store = twinned[variant.name];
    if (!previous || !store) return [variant];
    return [
      variant,
      keybrake(previousName(previous, store), store, 1, {
        cli: previous.cli,
        label: `built from ${previous.ref} (${previous.commit})`,
      }),
    ];
  });
}

async function main(): Promise<void> {
  const fsync = fsyncLatency();
  log(`fsync in ${tmpdir()}: p50 ${fsync.p50.toFixed(3)} ms, p99 ${fsync.p99.toFixed(3)} ms`);
  const previous = againstRef === undefined ? undefined : await buildRef(ROOT, againstRef, log);
  const upstream = await startUpstream();
  const upstreamUrl = upstream.url;
  const variants: VariantReport[] = [];
  try {
    for (const group of variantGroups(previous)) {
      const reports = new Map<Variant, VariantReport>();
      const contenders: Contender[] = [];
      try {
        for (const variant of group) {
          log(`${variant.name}: starting`);
          try {
            const running = await variant.start(upstreamUrl);
            contenders.push({ variant, running, loads: {}, cpu: 0, requests: 0, peakRss: 0 });
          } catch (error) {
            const reason = error instanceof Error ? error.message.split('\n')[0]! : String(error);
            log(`${variant.name}: could not start: ${reason}`);
            reports.set(variant, {
              name: variant.name,
              route: variant.route,
              description: variant.description,
              skipped: reason,
              runs: {},
              cpuSecondsPer1000: null,
              peakRssMb: null,
            });
          }
        }
        if (contenders.length > 0) {
          const measured = await benchGroup(contenders);
          contenders.forEach(({ variant }, i) =>
            reports.set(variant, {
              name: variant.name,
              route: variant.route,
              description: variant.description,
              ...measured[i]!,
            }),
          );
        }
      } finally {
        for (const contender of contenders) await contender.running.stop();
      }
      for (const variant of group) variants.push(reports.get(variant)!);
    }
  } finally {
    await upstream.service.stop();
  }
  log('cap race: embedded store');
  const embedded = await raceOn('embedded');
  log(`  ${JSON.stringify(embedded)}`);
  log('cap race: embedded store, 2 worker processes');
  const embeddedWorkers = await raceOn('embedded', 2);
  log(`  ${JSON.stringify(embeddedWorkers)}`);
  log('cap race: Redis store, 2 replicas');
  const redis = await raceOn('redis');
  log(`  ${JSON.stringify(redis)}`);

  const measuredReport: BenchReport = {
    date: new Date().toISOString(),
    mode: quick ? 'quick' : 'full',
    machine: {
      cores: cpus().length,
      cpu: cpus()[0]?.model ?? 'unknown',
      memoryGb: Math.round(totalmem() / 1024 ** 3),
      node: process.version,
      kernel: release(),
      fsyncP50Ms: Number(fsync.p50.toFixed(3)),
      fsyncP99Ms: Number(fsync.p99.toFixed(3)),
      note: 'load generator, upstream and variant share the machine',
    },
    settings: {
      secondsPerRun: seconds,
      peakConnections,
      loadGenerator: ohaBin
        ? 'oha (open loop, evenly paced, latency corrected for coordinated omission) for the fixed rates; autocannon (in the harness process) for sequential and peak runs'
        : 'autocannon (in the harness process)',
      ...(previous ? { roundsSideBySide: rounds } : {}),
    },
    variants,
    capRace: { embedded, embeddedWorkers, redis },
  };
  const report: BenchReport = previous
    ? {
        ...measuredReport,
        comparison: compare(previous, rounds, variants, (variant) =>
          added(measuredReport, variant, 'sequential', 'p50'),
        ),
      }
    : measuredReport;
  mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
  mkdirSync(join(ROOT, 'docs'), { recursive: true });
  const stamp = report.date.replace(/[:.]/g, '-');
  writeFileSync(
    join(ROOT, `bench/results/${stamp}${quick ? '-quick' : ''}.json`),
    `${JSON.stringify(report, null, 2)}\n`,
  );
  if (!quick || process.argv.includes('--write-docs')) {
    writeFileSync(join(ROOT, 'docs/benchmarks-latency.svg'), renderSvg(report));
    updateDocs(join(ROOT, 'docs/benchmarks.md'), renderMarkdown(report));
  }
  process.stdout.write(`${renderMarkdown(report)}\n`);
  // What must hold on every run, quick ones in CI included: the cap never overshoots, and every
  // Keybrake variant runs (a peer that cannot start is only reported).
  const failures = [
    ...(embedded.overshootUsd > 0 ? [`embedded cap race overshot by $${embedded.overshootUsd}`] : []),
    ...(embeddedWorkers.overshootUsd > 0
      ? [`embedded cap race on 2 workers overshot by $${embeddedWorkers.overshootUsd}`]
      : []),
    ...(redis.overshootUsd > 0 ? [`Redis cap race overshot by $${redis.overshootUsd}`] : []),
    ...variants
      .filter((v) => v.name.startsWith('keybrake') && v.skipped)
      .map((v) => `${v.name} did not run: ${v.skipped}`),
  ];
  if (failures.length > 0) {
    log(`FAILED: ${failures.join('; ')}`);
    process.exitCode = 1;
  }
}

/** Replaces the generated part of docs/benchmarks.md (between the markers), keeping the prose around it. */
function updateDocs(path: string, generated: string): void {
  const begin = '<!-- bench:begin -->';
  const end = '<!-- bench:end -->';
  const current = existsSync(path) ? readFileSync(path, 'utf8') : `# Benchmarks\n\n${begin}\n${end}\n`;
  const from = current.indexOf(begin);
  const to = current.indexOf(end);
  if (from < 0 || to < from) throw new Error(`${path} lacks the ${begin} / ${end} markers`);
  writeFileSync(path, `${current.slice(0, from + begin.length)}\n${generated}\n${current.slice(to)}`);
}

await main();
