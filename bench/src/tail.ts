/**
 * What the fixed-rate tail of `keybrake serve` on the embedded store is made of (issue 21).
 *
 * `node bench/dist/tail.js [--rates=500,2000] [--seconds=10] [--rounds=1] [--against=<git-ref>]
 *   [--flags="<node flags>"] [--pass-through] [--cpu-prof[=<ms>]] [--keep=<dir>] [--out=<file>]`
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
 * `--cpu-prof` runs this tree under `node --cpu-prof` and, at the end, prints what its samples were
 * doing during each rate's runs and inside the stalls of at least `<ms>` (default 10): by category
 * and by function (`cpu-profile.ts`), lined up through the probe's `clock` event; `--keep` copies
 * the profile and the probe's events into that folder.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildRef } from './against.js';
import { index, printSummary, readProfile, samplesIn, summarise, type Sample } from './cpu-profile.js';
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
/** The embedded store's `wal_autocheckpoint` (`WAL_AUTOCHECKPOINT_PAGES` in sqlite-store.ts). */
const BACKSTOP_PAGES = 4000;

interface ProbeEvent {
  readonly event: 'stall' | 'gc' | 'commit' | 'checkpoint' | 'second' | 'clock';
  readonly monoMs?: number;
  readonly thread: string;
  readonly t: number;
  readonly ms?: number;
  readonly runq?: number;
  readonly kind?: number;
  readonly reservations?: number;
  readonly records?: number;
  readonly frames?: number;
  readonly restarted?: boolean;
  readonly walBefore?: number;
  readonly answer?: { busy: number; log: number; checkpointed: number };
  readonly heapBytes?: number;
  readonly newSpaceBytes?: number;
}

/** One proxy to measure. */
interface Contender {
  readonly name: string;
  readonly cli: string | undefined;
  readonly nodeFlags: readonly string[];
  /** Run under `--cpu-prof` (into the run's folder). */
  readonly profile?: boolean;
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
    [
      '--require',
      PROBE,
      ...contender.nodeFlags,
      ...(contender.profile ? ['--cpu-prof', `--cpu-prof-dir=${join(dir, 'prof')}`] : []),
      contender.cli,
      'serve',
    ],
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
  readonly commitsBy: Readonly<Record<'duringCheckpoint' | 'restartingWal' | 'pastBackstop' | 'other', CommitFigures>>;
  /** The WAL's longest length seen before a commit, pages. */
  readonly walMaxPages: number;
  readonly checkpoints: {
    readonly count: number;
    readonly p50Ms: number;
    readonly maxMs: number;
    /** The WAL's length (pages) at the checkpoints, median. */
    readonly walPagesP50: number;
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
  // SQLite's own checkpoint (wal_autocheckpoint, the store's backstop at 4,000 pages) runs inside
  // the COMMIT that leaves the WAL at least that long.
  const pastBackstop = (commit: ProbeEvent): boolean =>
    !commit.restarted && (commit.walBefore ?? 0) + (commit.frames ?? 0) >= BACKSTOP_PAGES;
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
      pastBackstop: commitFigures(commits.filter(pastBackstop)),
      other: commitFigures(
        commits.filter((commit) => !commit.restarted && !pastBackstop(commit) && !duringCheckpoint(commit)),
      ),
    },
    walMaxPages: Math.max(0, ...commits.map((commit) => (commit.walBefore ?? 0) + (commit.frames ?? 0))),
    checkpoints: {
      count: checkpoints.length,
      p50Ms: quantile(
        checkpoints.map((c) => c.ms!),
        0.5,
      ),
      maxMs: Math.max(0, ...checkpoints.map((c) => c.ms!)),
      walPagesP50: quantile(
        checkpoints.map((c) => c.answer?.log ?? 0),
        0.5,
      ),
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
  const profileOption = process.argv.find((arg) => arg === '--cpu-prof' || arg.startsWith('--cpu-prof='));
  const profiledStallMs = profileOption?.includes('=') ? Number(profileOption.split('=')[1]) : 10;
  const contenders: Contender[] = [
    {
      name: 'this tree',
      cli: join(ROOT, 'core-proxy/dist/cli.js'),
      nodeFlags: [],
      profile: profileOption !== undefined,
    },
  ];
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
  const windows: { proxy: Running; rate: number; from: number; to: number }[] = [];
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
          windows.push({ proxy, rate, from, to });
          report(proxy.contender.name, rate, round, load, parts);
        }
      }
    }
  } finally {
    for (const proxy of running) {
      for (const service of proxy.services) await service.stop();
      if (proxy.contender.profile && proxy.probeFile)
        reportProfile(
          proxy,
          windows.filter((window) => window.proxy === proxy),
          profiledStallMs,
        );
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
    `  commits during a checkpoint ${by(parts.commitsBy.duringCheckpoint)}; restarting the WAL ${by(parts.commitsBy.restartingWal)}; running SQLite's own checkpoint (WAL past ${BACKSTOP_PAGES} pages) ${by(parts.commitsBy.pastBackstop)}; the rest ${by(parts.commitsBy.other)}`,
  );
  log(
    `  checkpoints ${parts.checkpoints.count}, p50 ${f(parts.checkpoints.p50Ms)} max ${f(parts.checkpoints.maxMs)} ms, at a WAL of ${parts.checkpoints.walPagesP50} pages (median), longest WAL ${parts.walMaxPages}; scavenges ${parts.scavenges.count} (${f(parts.scavenges.totalMs, 0)} ms, max ${f(parts.scavenges.maxMs)}), mark-compacts ${parts.fullGcs.count} (${f(parts.fullGcs.totalMs, 0)} ms, max ${f(parts.fullGcs.maxMs)}), new space ${f(parts.newSpaceMb, 0)} MB`,
  );
}

await main();

/**
 * What the profiled contender's samples were doing: over each rate's runs, and inside the stalls
 * of at least `stallMs` (the probe's stall events, moved onto the profile's monotonic clock).
 */
function reportProfile(
  proxy: Running,
  runs: readonly { rate: number; from: number; to: number }[],
  stallMs: number,
): void {
  const folder = join(proxy.dir, 'prof');
  const file = readdirSync(folder).find((name) => name.endsWith('.cpuprofile'));
  const all = readEvents(proxy.probeFile!, 0, Infinity);
  const clock = all.find((event) => event.event === 'clock');
  if (!file || !clock) {
    log(`no CPU profile or clock event for ${proxy.contender.name}`);
    return;
  }
  const keep = option('keep');
  if (keep) {
    mkdirSync(keep, { recursive: true });
    copyFileSync(join(folder, file), join(keep, file));
    copyFileSync(proxy.probeFile!, join(keep, `${file}.probe.jsonl`));
    log(`kept ${join(keep, file)} and its probe events`);
  }
  const indexed = index(readProfile(join(folder, file)));
  const toMicros = (epochMs: number): number => (clock.monoMs! + (epochMs - clock.t)) * 1000;
  const write = (line: string): void => log(line);
  for (const rate of [...new Set(runs.map((run) => run.rate))]) {
    const mine = runs.filter((run) => run.rate === rate);
    const during: Sample[] = mine.flatMap((run) => samplesIn(indexed, toMicros(run.from), toMicros(run.to)));
    printSummary(`CPU profile, ${proxy.contender.name} @${rate} req/s, whole runs`, summarise(indexed, during), write);
    const stalls = all.filter(
      (event) =>
        event.event === 'stall' && event.ms! >= stallMs && mine.some((run) => event.t >= run.from && event.t <= run.to),
    );
    const inStalls: Sample[] = stalls.flatMap((stall) =>
      samplesIn(indexed, toMicros(stall.t), toMicros(stall.t + stall.ms!)),
    );
    printSummary(
      `CPU profile, ${proxy.contender.name} @${rate} req/s, inside the ${stalls.length} stalls of ${stallMs} ms or more (${sum(stalls.map((stall) => stall.ms!)).toFixed(0)} ms)`,
      summarise(indexed, inStalls),
      write,
    );
  }
}
