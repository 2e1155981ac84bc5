/**
 * `pnpm bench --against <git-ref>`: a previous commit's proxy, built once per commit id under the
 * cache directory (scripts/build-release.sh), to run side by side with the working tree's.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { VariantReport } from './report.js';

const run = promisify(execFile);

/** A previous commit's proxy, built. */
export interface BuiltRef {
  /** The ref as given on the command line. */
  readonly ref: string;
  readonly commit: string;
  /** The first 7 hex digits of the commit, as the variant names show it. */
  readonly shortCommit: string;
  /** Its `keybrake` CLI (`core-proxy/dist/cli.js` of the checkout). */
  readonly cli: string;
}

/**
 * Exports `ref` into `$KEYBRAKE_CACHE_DIR/bench-against/<commit>` and builds its core proxy
 * there with its own lockfile, by `scripts/build-release.sh` (the upgrade tests' builder too):
 * reused as it is on the next run for the same commit. Logs what it does to `log`.
 */
export async function buildRef(root: string, ref: string, log: (message: string) => void): Promise<BuiltRef> {
  const { stdout } = await run('git', ['-C', root, 'rev-parse', '--verify', `${ref}^{commit}`]);
  const commit = stdout.trim();
  const shortCommit = commit.slice(0, 7);
  log(`${ref} (${shortCommit}): building in the cache, or reusing its earlier build`);
  const built = await run('bash', [join(root, 'scripts/build-release.sh'), '--into', 'bench-against', commit], {
    cwd: root,
    maxBuffer: 64 * 1024 * 1024,
  });
  const dir = built.stdout.trim().split('\n').at(-1) as string;
  const cli = join(dir, 'core-proxy/dist/cli.js');
  if (!existsSync(cli)) throw new Error(`building ${ref} left no ${cli}`);
  return { ref, commit, shortCommit, cli };
}

/** One figure of the working tree against the previous commit. */
export interface Ratio {
  readonly current: number | null;
  readonly previous: number | null;
  /** current / previous; `null` when either is missing or the previous one is not positive. */
  readonly ratio: number | null;
}

/** The side-by-side figures of one store. */
export interface StoreComparison {
  readonly store: 'embedded' | 'redis';
  readonly current: string;
  readonly previous: string;
  /** Latency added over direct, sequential (one connection), p50 in ms: lower is better. */
  readonly addedP50SequentialMs: Ratio;
  /** Highest req/s of the peak runs, whatever their p99 (`throughput`): higher is better. */
  readonly peakRequestsPerSecond: Ratio;
}

/** The `--against` part of a report. */
export interface Comparison {
  readonly ref: string;
  readonly commit: string;
  /** How many interleaved rounds each figure is the median of. */
  readonly rounds: number;
  readonly stores: readonly StoreComparison[];
}

function ratio(current: number | undefined, previous: number | undefined): Ratio {
  return {
    current: current ?? null,
    previous: previous ?? null,
    ratio: current === undefined || previous === undefined || previous <= 0 ? null : current / previous,
  };
}

/**
 * Pairs each store's `keybrake <store>` with its `keybrake@<commit> <store>` twin. `addedP50`
 * gives a variant's added sequential p50 (see report.ts).
 */
export function compare(
  built: BuiltRef,
  rounds: number,
  variants: readonly VariantReport[],
  addedP50: (variant: VariantReport) => number | undefined,
): Comparison {
  const stores: StoreComparison[] = [];
  for (const store of ['embedded', 'redis'] as const) {
    const current = variants.find((variant) => variant.name === `keybrake ${store}` && !variant.skipped);
    const previous = variants.find((variant) => variant.name === previousName(built, store) && !variant.skipped);
    if (!current || !previous) continue;
    stores.push({
      store,
      current: current.name,
      previous: previous.name,
      addedP50SequentialMs: ratio(addedP50(current), addedP50(previous)),
      peakRequestsPerSecond: ratio(
        current.runs.throughput?.requestsPerSecond,
        previous.runs.throughput?.requestsPerSecond,
      ),
    });
  }
  return { ref: built.ref, commit: built.commit, rounds, stores };
}

/** The variant name of the previous commit's proxy on one store. */
export function previousName(built: BuiltRef, store: 'embedded' | 'redis'): string {
  return `keybrake@${built.shortCommit} ${store}`;
}
