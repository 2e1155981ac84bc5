/**
 * Summaries of a V8 `.cpuprofile` (`node --cpu-prof`), for issue 21's floor analysis.
 *
 * `node bench/dist/cpu-profile.js <file.cpuprofile> [--from=<µs>] [--to=<µs>] [--top=25]`
 * prints the busy samples by category (see {@link category}) and the top functions by self time.
 * `tail.ts --cpu-prof` uses {@link samplesIn} to take the samples inside the event loop's stalls.
 *
 * Times are V8's: microseconds on the monotonic clock (`CLOCK_MONOTONIC` on Linux, the clock of
 * `process.hrtime`). Every sample weighs the same (the median of `timeDeltas`).
 */
import { readFileSync } from 'node:fs';

interface CallFrame {
  readonly functionName: string;
  readonly url: string;
  readonly lineNumber: number;
}

interface ProfileNode {
  readonly id: number;
  readonly callFrame: CallFrame;
  readonly parent?: number;
  readonly children?: readonly number[];
}

export interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly startTime: number;
  readonly endTime: number;
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

/** One sample: when (µs, monotonic), how long it stands for (µs), its node. */
export interface Sample {
  readonly at: number;
  readonly us: number;
  readonly node: number;
}

export interface Indexed {
  readonly byId: ReadonlyMap<number, ProfileNode>;
  readonly parent: ReadonlyMap<number, number>;
  readonly samples: readonly Sample[];
}

export function readProfile(path: string): CpuProfile {
  return JSON.parse(readFileSync(path, 'utf8')) as CpuProfile;
}

export function index(profile: CpuProfile): Indexed {
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const node of profile.nodes) {
    byId.set(node.id, node);
    for (const child of node.children ?? []) parent.set(child, node.id);
  }
  const samples: Sample[] = [];
  // Every sample stands for the median interval: on a loaded machine the sampler thread itself
  // waits for a core, and a long gap says nothing about what the sampled thread did meanwhile.
  const sorted = [...profile.timeDeltas].sort((a, b) => a - b);
  const interval = sorted[Math.floor(sorted.length / 2)] ?? 0;
  let at = profile.startTime;
  for (let i = 0; i < profile.samples.length; i += 1) {
    at += profile.timeDeltas[i] ?? 0;
    samples.push({ at, us: interval, node: profile.samples[i]! });
  }
  return { byId, parent, samples };
}

export function samplesIn(indexed: Indexed, from: number, to: number): Sample[] {
  return indexed.samples.filter((sample) => sample.at >= from && sample.at < to);
}

const frameName = (frame: CallFrame): string =>
  `${frame.functionName || '(anonymous)'} ${frame.url.replace(/^.*\/(node_modules|dist)\//, '$1/')}:${frame.lineNumber + 1}`;

/** The node's frames, leaf first. */
function stack(indexed: Indexed, id: number): CallFrame[] {
  const frames: CallFrame[] = [];
  for (let at: number | undefined = id; at !== undefined; at = indexed.parent.get(at)) {
    const node = indexed.byId.get(at);
    if (node) frames.push(node.callFrame);
  }
  return frames;
}

/**
 * What a sample was doing: V8's own entries (idle, GC, program) by name; a native leaf (no url,
 * e.g. a better-sqlite3 statement's `run`) by the nearest frame that has one, with the group commit
 * (native frames under `commitPendingWrites` itself: `BEGIN` and `COMMIT`, the blocking fsync) apart.
 */
export function category(indexed: Indexed, id: number): string {
  const frames = stack(indexed, id);
  const leaf = frames[0];
  if (!leaf) return 'unknown';
  if (leaf.functionName === '(idle)') return 'idle';
  if (leaf.functionName === '(garbage collector)') return 'GC';
  if (leaf.functionName === '(program)') return 'V8/native (program)';
  // tail.ts's probe wraps some statements (BEGIN, COMMIT, two inserts): its frames are looked through.
  const probe = (frame: CallFrame): boolean => frame.url.endsWith('tail-probe.cjs');
  const owner = frames.find((frame) => frame.url !== '' && !probe(frame));
  const url = owner?.url ?? '';
  const inNative = frames.slice(0, frames.indexOf(owner!)).every((frame) => frame.url === '' || probe(frame));
  if (/\/store\//.test(url) && inNative && frames.indexOf(owner!) > 0 && owner?.functionName === 'commitPendingWrites')
    return 'sqlite: BEGIN/COMMIT (fsync)';
  // better-sqlite3's statements run as native code inside the store's functions: V8 books their
  // time as those functions' own, so the store's statements and its JavaScript are one category.
  if (/\/store\//.test(url) || /better-sqlite3/.test(url)) return 'store: statements + JS';
  if (/\/audit\//.test(url)) return 'audit (canonical JSON, hash, record)';
  if (/node:internal\/crypto|node:crypto/.test(url)) return 'crypto';
  if (/undici/.test(url)) return 'undici';
  if (/prom-client/.test(url)) return 'prom-client';
  if (/fastify|pino|avvio|find-my-way|light-my-request/.test(url)) return 'fastify/pino';
  if (/node:_http|node:http|node:internal\/http/.test(url)) return 'node:http';
  if (/node:net|node:internal\/stream|node:stream|node:internal\/net|node:events|node:internal\/timers/.test(url))
    return 'node net/streams/timers';
  if (/\/enforcement\/|\/http\//.test(url)) return 'keybrake: pipeline + proxy route';
  if (/\/(vendors|pricing|keys)\//.test(url)) return 'keybrake: vendors, pricing, keys';
  if (/core-proxy\/dist/.test(url)) return 'keybrake: other';
  if (/^node:/.test(url)) return 'node: other';
  if (/node_modules/.test(url)) return `deps: ${/node_modules\/(?:\.pnpm\/)?(@?[^/@]+)/.exec(url)?.[1] ?? 'other'}`;
  return 'other';
}

export interface Summary {
  readonly totalUs: number;
  readonly busyUs: number;
  readonly categories: readonly { readonly name: string; readonly us: number; readonly share: number }[];
  readonly topSelf: readonly { readonly name: string; readonly us: number; readonly share: number }[];
  /** Functions on the stack (inclusive), by time: what a long turn was inside. */
  readonly topInclusive: readonly { readonly name: string; readonly us: number; readonly share: number }[];
}

/** Busy samples (not idle) by category, self time and inclusive time; shares of the busy time. */
export function summarise(indexed: Indexed, samples: readonly Sample[], top = 20): Summary {
  const categories = new Map<string, number>();
  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  let total = 0;
  let busy = 0;
  for (const sample of samples) {
    total += sample.us;
    const name = category(indexed, sample.node);
    if (name === 'idle') continue;
    busy += sample.us;
    categories.set(name, (categories.get(name) ?? 0) + sample.us);
    const frames = stack(indexed, sample.node);
    const leafName = frameName(frames[0]!);
    self.set(leafName, (self.get(leafName) ?? 0) + sample.us);
    for (const frame of new Set(frames.map(frameName))) inclusive.set(frame, (inclusive.get(frame) ?? 0) + sample.us);
  }
  const ranked = (map: Map<string, number>, limit: number) =>
    [...map.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, limit)
      .map(([name, us]) => ({ name, us, share: busy === 0 ? 0 : us / busy }));
  return {
    totalUs: total,
    busyUs: busy,
    categories: ranked(categories, 16),
    topSelf: ranked(self, top),
    topInclusive: ranked(inclusive, top),
  };
}

export function printSummary(title: string, summary: Summary, write: (line: string) => void): void {
  const pct = (share: number): string => `${(share * 100).toFixed(1)}%`;
  write(
    `${title}: ${(summary.totalUs / 1000).toFixed(0)} ms sampled, ${(summary.busyUs / 1000).toFixed(0)} ms busy (${pct(summary.busyUs / Math.max(1, summary.totalUs))})`,
  );
  write('  by category (share of busy):');
  for (const entry of summary.categories) write(`    ${pct(entry.share).padStart(6)}  ${entry.name}`);
  write('  top self time:');
  for (const entry of summary.topSelf) write(`    ${pct(entry.share).padStart(6)}  ${entry.name}`);
  write('  top inclusive time:');
  for (const entry of summary.topInclusive) write(`    ${pct(entry.share).padStart(6)}  ${entry.name}`);
}

function option(name: string): string | undefined {
  return process.argv.find((arg) => arg.startsWith(`--${name}=`))?.slice(name.length + 3);
}

if (process.argv[1]?.endsWith('cpu-profile.js')) {
  const file = process.argv.slice(2).find((arg) => !arg.startsWith('--'));
  if (!file) throw new Error('usage: node bench/dist/cpu-profile.js <file.cpuprofile> [--from=µs] [--to=µs]');
  const indexed = index(readProfile(file));
  const from = Number(option('from') ?? -Infinity);
  const to = Number(option('to') ?? Infinity);
  printSummary(file, summarise(indexed, samplesIn(indexed, from, to), Number(option('top') ?? 25)), (line) =>
    process.stdout.write(`${line}\n`),
  );
}
