/**
 * `pnpm bench [--quick]`: every variant against one mock upstream with one load generator
 * (autocannon), then the cap race. Writes bench/results/<date>.json, docs/benchmarks.md and
 * docs/benchmarks-latency.svg.
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
import { renderMarkdown, renderSvg, type BenchReport, type VariantReport } from './report.js';
import { DIST, ROOT, VARIANTS, issueBenchKey, startKeybrake, startRedis, type RunningVariant } from './variants.js';

const quick = process.argv.includes('--quick');
const only = process.argv
  .find((arg) => arg.startsWith('--only='))
  ?.slice('--only='.length)
  .split(',');
const seconds = quick ? 2 : 10;
const warmupSeconds = quick ? 1 : 3;
const peakConnections = quick ? [64] : [16, 64, 256];

type RunName = 'sequential' | 'rate500' | 'rate2000' | 'peak';

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

async function benchVariant(
  name: string,
  running: RunningVariant,
): Promise<Omit<VariantReport, 'name' | 'route' | 'description'>> {
  await runLoad(running.targets, { durationSeconds: warmupSeconds, connections: 16 });
  const runs: Partial<Record<RunName, LoadResult>> = {};
  let cpu = 0;
  let requests = 0;
  let peakRss = 0;
  /** One measured run; its cost counts towards the variant's CPU and memory figures. */
  const run = async (label: string, options: LoadOptions): Promise<LoadResult> => {
    const measured = await measure(running, options);
    cpu += measured.cpuSeconds;
    requests += measured.load.requests;
    peakRss = Math.max(peakRss, measured.peakRssBytes);
    const load = measured.load;
    log(
      `  ${name} ${label}: ${load.requestsPerSecond.toFixed(0)} req/s, p50 ${load.p50} ms, p99 ${load.p99} ms, p99.9 ${load.p999} ms, errors ${load.errors + load.non2xx}`,
    );
    return load;
  };
  runs.sequential = await run('sequential', { durationSeconds: seconds, connections: 1 });
  runs.rate500 = await run('rate500', { durationSeconds: seconds, connections: 32, rate: 500 });
  runs.rate2000 = await run('rate2000', { durationSeconds: seconds, connections: 64, rate: 2000 });
  let peak: LoadResult | undefined;
  for (const connections of peakConnections) {
    const load = await run(`peak@${connections}`, { durationSeconds: seconds, connections });
    if (load.p99 < 50 && (!peak || load.requestsPerSecond > peak.requestsPerSecond)) peak = load;
  }
  if (peak) runs.peak = peak;
  return {
    runs,
    cpuSecondsPer1000: running.services.length > 0 ? (cpu / requests) * 1000 : null,
    peakRssMb: running.services.length > 0 ? peakRss / 1024 / 1024 : null,
  };
}

/** The mock upstream, as its own process. */
async function startUpstream(): Promise<{ service: Service; url: string }> {
  const service = await startService('upstream', process.execPath, [join(DIST, 'upstream.js'), '0'], {
    ready: /^listening/,
  });
  return { service, url: `http://127.0.0.1:${/listening (\d+)/.exec(service.output[0] ?? '')?.[1]}` };
}

async function raceOn(store: 'embedded' | 'redis'): Promise<CapRaceResult> {
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
      const replica = await startKeybrake(upstreamUrl, join(dir, `data-${i}`), redisUrl);
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

async function main(): Promise<void> {
  const fsync = fsyncLatency();
  log(`fsync in ${tmpdir()}: p50 ${fsync.p50.toFixed(3)} ms, p99 ${fsync.p99.toFixed(3)} ms`);
  const upstream = await startUpstream();
  const upstreamUrl = upstream.url;
  const variants: VariantReport[] = [];
  try {
    for (const variant of VARIANTS) {
      if (only && !only.some((name) => variant.name.includes(name))) continue;
      log(`${variant.name}: starting`);
      let running: RunningVariant;
      try {
        running = await variant.start(upstreamUrl);
      } catch (error) {
        const reason = error instanceof Error ? error.message.split('\n')[0]! : String(error);
        log(`${variant.name}: could not start: ${reason}`);
        variants.push({
          name: variant.name,
          route: variant.route,
          description: variant.description,
          skipped: reason,
          runs: {},
          cpuSecondsPer1000: null,
          peakRssMb: null,
        });
        continue;
      }
      try {
        variants.push({
          name: variant.name,
          route: variant.route,
          description: variant.description,
          ...(await benchVariant(variant.name, running)),
        });
      } finally {
        await running.stop();
      }
    }
  } finally {
    await upstream.service.stop();
  }
  log('cap race: embedded store');
  const embedded = await raceOn('embedded');
  log(`  ${JSON.stringify(embedded)}`);
  log('cap race: Redis store, 2 replicas');
  const redis = await raceOn('redis');
  log(`  ${JSON.stringify(redis)}`);

  const report: BenchReport = {
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
    settings: { secondsPerRun: seconds, peakConnections, loadGenerator: 'autocannon (in the harness process)' },
    variants,
    capRace: { embedded, redis },
  };
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
