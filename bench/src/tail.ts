/**
 * What the fixed-rate tail of `keybrake serve` on the embedded store is made of (issue 21).
 *
 * `node bench/dist/tail.js [--rates=500,2000] [--seconds=10] [--rounds=1] [--against=<git-ref>]
 *   [--flags="<node flags>"] [--pass-through] [--out=<file>]`
 *
 * Runs `keybrake serve` with `tail-probe.cjs` preloaded (see there) against the bench's mock
 * upstream, evenly paced by oha (`KEYBRAKE_OHA_BIN`, `--latency-correction`, as `pnpm bench` does)
 * at each rate, and lines the proxy's own events up with the run: every event-loop stall over
 * 2 ms, split into the time the proxy waited for a core (run-queue wait: the machine's share), GC
 * pauses, group commits (their fsync) and the rest (JavaScript); the commits (per second, writes
 * per group, WAL frames per commit, blocking time); the checkpointer thread's checkpoints; GC.
 * Contenders, alternated run by run: this tree; with `--against` that commit's build (as
 * `pnpm bench --against` builds it); with `--flags` this tree again under those node flags; with
 * `--pass-through` the bench's Node pass-through too (oha figures only: the machine's own tail).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildRef } from './against.js';
import { runLoad, type LoadResult } from './load.js';
import { freePort, startService, type Service } from './processes.js';
import { DIST, ROOT, issueBenchKey, paymentTarget, type Target } from './variants.js';

function option(name: string): string | undefined {
  return process.argv.find((arg) => arg.startsWith(`--${name}=`))?.slice(name.length + 3);
}
const rates = (option('rates') ?? '500,2000').split(',').map(Number);
const seconds = Number(option('seconds') ?? 10);
const rounds = Number(option('rounds') ?? 1);
const ohaBin = process.env.KEYBRAKE_OHA_BIN;
if (!ohaBin) throw new Error('KEYBRAKE_OHA_BIN is not set (scripts/install-bench.sh --oha prints it)');
const oha = ohaBin;
const PROBE = join(DIST, 'tail-probe.cjs');

interface ProbeEvent {
  readonly event: 'stall' | 'gc' | 'commit' | 'checkpoint' | 'second';
  readonly thread: string;
  readonly t: number;
  readonly ms?: number;
  readonly runq?: number;
  readonly kind?: number;
  readonly reservations?: number;
  readonly records?: number;
  readonly frames?: number;
  readonly restarted?: boolean;
  readonly answer?: { busy: number; log: number; checkpointed: number };
  readonly heapBytes?: number;
  readonly newSpaceBytes?: number;
}

/** One proxy to measure. */
interface Contender {
  readonly name: string;
  readonly cli: string | undefined;
  readonly nodeFlags: readonly string[];
}

interface Running {
  readonly contender: Contender;
  readonly target: Target;
  readonly probeFile: string | undefined;
  readonly services: Service[];
  readonly dir: string;
}

async function start(contender: Contender, upstream: string): Promise<Running> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-tail-'));
  if (contender.cli === undefined) {
    const service = await startService('passthrough', process.execPath, [join(DIST, 'passthrough.js'), '0', upstream], {
      ready: /^listening \d+/,
    });
    const port = /^listening (\d+)/.exec(service.output.find((line) => line.startsWith('listening')) ?? '')?.[1];
    return {
      contender,
      target: paymentTarget(`http://127.0.0.1:${port}`, '/v1/payment_intents'),
      probeFile: undefined,
      services: [service],
      dir,
    };
  }
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const probeFile = join(dir, 'probe.jsonl');
  const service = await startService(
    'keybrake',
    process.execPath,
    ['--require', PROBE, ...contender.nodeFlags, contender.cli, 'serve'],
    {
      cwd: join(contender.cli, '../../..'),
      env: {
        KEYBRAKE_TAIL_PROBE: probeFile,
        KEYBRAKE_HOST: '127.0.0.1',
        KEYBRAKE_PORT: String(port),
        KEYBRAKE_API_KEYS: 'bench-admin',
        KEYBRAKE_DATA_DIR: join(dir, 'data'),
        KEYBRAKE_LOG_LEVEL: 'warn',
        STRIPE_SECRET_KEY: 'sk_test_bench',
        KEYBRAKE_STRIPE_BASE_URL: upstream,
      },
      probe: async () => (await fetch(`${url}/readyz`)).ok,
    },
  );
  const vaultKey = await issueBenchKey(url);
  return {
    contender,
    target: paymentTarget(url, '/stripe/v1/payment_intents', { authorization: `Bearer ${vaultKey}` }),
    probeFile,
    services: [service],
    dir,
  };
}

function readEvents(file: string, from: number, to: number): ProbeEvent[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as ProbeEvent)
    .filter((event) => event.t >= from && event.t <= to);
}

function quantile(values: readonly number[], fraction: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(fraction * sorted.length) - 1))]!;
}

const sum = (values: readonly number[]): number => values.reduce((total, value) => total + value, 0);

/** Time two intervals share, ms. */
function overlap(aStart: number, aMs: number, bStart: number, bMs: number): number {
  return Math.max(0, Math.min(aStart + aMs, bStart + bMs) - Math.max(aStart, bStart));
}

interface CommitFigures {
  readonly count: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

function commitFigures(commits: readonly ProbeEvent[]): CommitFigures {
  const times = commits.map((commit) => commit.ms!);
  return { count: times.length, p50Ms: quantile(times, 0.5), p99Ms: quantile(times, 0.99) };
}

/** What one run's events say. */
interface Breakdown {
  readonly stalls: number;
  readonly stallMs: number;
  /** Of the stall time: waiting for a core, GC, group commits (less their run-queue wait), the rest. */
  readonly stallRunQueueMs: number;
  readonly stallGcMs: number;
  readonly stallCommitMs: number;
  readonly stallOtherMs: number;
  readonly longestStalls: readonly string[];
  readonly commitsPerSecond: number;
  readonly writesPerCommit: number;
  readonly framesPerCommit: number;
  readonly commitMs: { readonly p50: number; readonly p99: number; readonly max: number; readonly total: number };
  /** Blocking time of the commits that ran while the checkpointer thread checkpointed, of those that restarted the WAL, and of the rest. */
  readonly commitsBy: Readonly<Record<'duringCheckpoint' | 'restartingWal' | 'other', CommitFigures>>;
  readonly checkpoints: {
    readonly count: number;
    readonly p50Ms: number;
    readonly maxMs: number;
    readonly frames: number;
  };
  readonly scavenges: { readonly count: number; readonly totalMs: number; readonly maxMs: number };
  readonly fullGcs: { readonly count: number; readonly totalMs: number; readonly maxMs: number };
  readonly newSpaceMb: number;
}

function breakdown(events: readonly ProbeEvent[], runSeconds: number): Breakdown {
  const of = (name: ProbeEvent['event']): ProbeEvent[] => events.filter((event) => event.event === name);
  const stalls = of('stall');
  const gcs = of('gc');
  const commits = of('commit').filter((event) => event.thread === 'main');
  const checkpoints = of('checkpoint');
  let runQueue = 0;
  let gcTime = 0;
  let commitTime = 0;
  let other = 0;
  const described: { ms: number; text: string }[] = [];
  for (const stall of stalls) {
    const ms = stall.ms!;
    const waited = Math.min(ms, stall.runq ?? 0);
    const gc = sum(gcs.map((gc) => overlap(stall.t, ms, gc.t, gc.ms!)));
    const inCommits = commits.filter((commit) => overlap(stall.t, ms, commit.t, commit.ms!) > 0);
    const commit = sum(
      inCommits.map((c) => Math.max(0, overlap(stall.t, ms, c.t, c.ms!) - Math.min(c.runq ?? 0, c.ms!))),
    );
    const shares = [waited, Math.min(gc, ms - waited)];
    shares.push(Math.min(commit, ms - shares[0]! - shares[1]!));
    runQueue += shares[0]!;
    gcTime += shares[1]!;
    commitTime += shares[2]!;
    other += ms - sum(shares);
    const inCheckpoints = checkpoints.filter((c) => overlap(stall.t, ms, c.t, c.ms!) > 0);
    described.push({
      ms,
      text: `${ms.toFixed(1)} ms: run queue ${waited.toFixed(1)}, GC ${gc.toFixed(1)}, commits ${commit.toFixed(1)} (${inCommits.length}, longest ${Math.max(0, ...inCommits.map((c) => c.ms!)).toFixed(1)}), checkpoint ${inCheckpoints.map((c) => c.ms!.toFixed(1)).join('/') || '-'}`,
    });
  }
  const commitTimes = commits.map((commit) => commit.ms!);
  const scavenges = gcs.filter((gc) => gc.kind === 1 || gc.kind === 2);
  const fulls = gcs.filter((gc) => gc.kind === 4);
  const newSpace = of('second').map((second) => second.newSpaceBytes ?? 0);
  const duringCheckpoint = (commit: ProbeEvent): boolean =>
    checkpoints.some((checkpoint) => overlap(commit.t, commit.ms!, checkpoint.t, checkpoint.ms!) > 0);
  return {
    stalls: stalls.length,
    stallMs: sum(stalls.map((stall) => stall.ms!)),
    stallRunQueueMs: runQueue,
    stallGcMs: gcTime,
    stallCommitMs: commitTime,
    stallOtherMs: other,
    longestStalls: described
      .sort((a, b) => b.ms - a.ms)
      .slice(0, 5)
      .map((stall) => stall.text),
    commitsPerSecond: commits.length / runSeconds,
    writesPerCommit: sum(commits.map((c) => (c.reservations ?? 0) + (c.records ?? 0))) / Math.max(1, commits.length),
    framesPerCommit: sum(commits.map((c) => c.frames ?? 0)) / Math.max(1, commits.length),
    commitMs: {
      p50: quantile(commitTimes, 0.5),
      p99: quantile(commitTimes, 0.99),
      max: Math.max(0, ...commitTimes),
      total: sum(commitTimes),
    },
    commitsBy: {
      duringCheckpoint: commitFigures(commits.filter(duringCheckpoint)),
      restartingWal: commitFigures(commits.filter((commit) => commit.restarted === true)),
      other: commitFigures(commits.filter((commit) => !commit.restarted && !duringCheckpoint(commit))),
    },
    checkpoints: {
      count: checkpoints.length,
      p50Ms: quantile(
        checkpoints.map((c) => c.ms!),
        0.5,
      ),
      maxMs: Math.max(0, ...checkpoints.map((c) => c.ms!)),
      frames: sum(checkpoints.map((c) => c.answer?.checkpointed ?? 0)),
    },
    scavenges: {
      count: scavenges.length,
      totalMs: sum(scavenges.map((gc) => gc.ms!)),
      maxMs: Math.max(0, ...scavenges.map((gc) => gc.ms!)),
    },
    fullGcs: {
      count: fulls.length,
      totalMs: sum(fulls.map((gc) => gc.ms!)),
      maxMs: Math.max(0, ...fulls.map((gc) => gc.ms!)),
    },
    newSpaceMb: Math.max(0, ...newSpace) / 1024 / 1024,
  };
}

function log(message: string): void {
  process.stderr.write(`${message}\n`);
}

async function main(): Promise<void> {
  const contenders: Contender[] = [{ name: 'this tree', cli: join(ROOT, 'core-proxy/dist/cli.js'), nodeFlags: [] }];
  const flags = option('flags');
  if (flags) contenders.push({ name: `this tree ${flags}`, cli: contenders[0]!.cli, nodeFlags: flags.split(' ') });
  const against = option('against');
  if (against) {
    const built = await buildRef(ROOT, against, log);
    contenders.push({ name: `${against} (${built.shortCommit})`, cli: built.cli, nodeFlags: [] });
  }
  if (process.argv.includes('--pass-through'))
    contenders.push({ name: 'node pass-through', cli: undefined, nodeFlags: [] });
  const upstream = await startService('upstream', process.execPath, [join(DIST, 'upstream.js'), '0'], {
    ready: /^listening/,
  });
  const upstreamUrl = `http://127.0.0.1:${/listening (\d+)/.exec(upstream.output[0] ?? '')?.[1]}`;
  const running: Running[] = [];
  const results: { contender: string; rate: number; round: number; load: LoadResult; breakdown?: Breakdown }[] = [];
  try {
    for (const contender of contenders) running.push(await start(contender, upstreamUrl));
    for (const proxy of running) await runLoad([proxy.target], { durationSeconds: 3, connections: 16 });
    let turn = 0;
    for (let round = 1; round <= rounds; round += 1) {
      for (const rate of rates) {
        const order = turn % 2 === 0 ? running : [...running].reverse();
        turn += 1;
        for (const proxy of order) {
          const from = performance.timeOrigin + performance.now();
          const load = await runLoad([proxy.target], {
            durationSeconds: seconds,
            connections: rate >= 2000 ? 64 : 32,
            rate,
            oha,
          });
          const to = performance.timeOrigin + performance.now();
          // Let the probe flush the run's last events.
          await new Promise((resolve) => setTimeout(resolve, 600));
          const parts = proxy.probeFile
            ? breakdown(readEvents(proxy.probeFile, from, to), (to - from) / 1000)
            : undefined;
          results.push({ contender: proxy.contender.name, rate, round, load, breakdown: parts });
          report(proxy.contender.name, rate, round, load, parts);
        }
      }
    }
  } finally {
    for (const proxy of running) {
      for (const service of proxy.services) await service.stop();
      rmSync(proxy.dir, { recursive: true, force: true });
    }
    await upstream.stop();
  }
  const out = option('out');
  if (out) writeFileSync(out, `${JSON.stringify({ date: new Date().toISOString(), seconds, results }, null, 2)}\n`);
}

function report(name: string, rate: number, round: number, load: LoadResult, parts: Breakdown | undefined): void {
  const f = (value: number, digits = 2): string => value.toFixed(digits);
  log(
    `${name} @${rate} req/s (round ${round}): ${f(load.requestsPerSecond, 0)} req/s, p50 ${f(load.p50)} p99 ${f(load.p99)} p99.9 ${f(load.p999)} ms, errors ${load.errors + load.non2xx}`,
  );
  if (!parts) return;
  log(
    `  loop stalls > 2 ms: ${parts.stalls}, ${f(parts.stallMs, 0)} ms: run queue ${f(parts.stallRunQueueMs, 0)}, GC ${f(parts.stallGcMs, 0)}, commits ${f(parts.stallCommitMs, 0)}, other JS ${f(parts.stallOtherMs, 0)}`,
  );
  for (const stall of parts.longestStalls) log(`    ${stall}`);
  log(
    `  commits ${f(parts.commitsPerSecond, 0)}/s, ${f(parts.writesPerCommit, 1)} writes and ${f(parts.framesPerCommit, 1)} WAL frames each; blocking p50 ${f(parts.commitMs.p50, 3)} p99 ${f(parts.commitMs.p99)} max ${f(parts.commitMs.max)} ms, ${f(parts.commitMs.total, 0)} ms in all`,
  );
  const by = (figures: CommitFigures): string =>
    `${figures.count}, p50 ${f(figures.p50Ms, 3)} p99 ${f(figures.p99Ms)} ms`;
  log(
    `  commits during a checkpoint ${by(parts.commitsBy.duringCheckpoint)}; restarting the WAL ${by(parts.commitsBy.restartingWal)}; the rest ${by(parts.commitsBy.other)}`,
  );
  log(
    `  checkpoints ${parts.checkpoints.count}, p50 ${f(parts.checkpoints.p50Ms)} max ${f(parts.checkpoints.maxMs)} ms, ${parts.checkpoints.frames} frames; scavenges ${parts.scavenges.count} (${f(parts.scavenges.totalMs, 0)} ms, max ${f(parts.scavenges.maxMs)}), mark-compacts ${parts.fullGcs.count} (${f(parts.fullGcs.totalMs, 0)} ms, max ${f(parts.fullGcs.maxMs)}), new space ${f(parts.newSpaceMb, 0)} MB`,
  );
}

await main();
