/**
 * `pnpm bench --against <git-ref>`: a previous commit's proxy, built once per commit id in a git
 * worktree under the cache directory, to run side by side with the working tree's.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
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

/** Written last, so a build cut short is built again rather than used. */
const BUILT_MARKER = '.keybrake-bench-built';

/**
 * Checks `ref` out into `$KEYBRAKE_CACHE_DIR/bench-against/<commit>` (a detached git worktree of
 * this repository) and builds its core proxy there with its own lockfile; reused as it is on the
 * next run for the same commit. Logs what it does to `log`.
 */
export async function buildRef(root: string, ref: string, log: (message: string) => void): Promise<BuiltRef> {
  const { stdout } = await run('git', ['-C', root, 'rev-parse', '--verify', `${ref}^{commit}`]);
  const commit = stdout.trim();
  const built: BuiltRef = {
    ref,
    commit,
    shortCommit: commit.slice(0, 7),
    cli: '',
  };
  const cache = process.env.KEYBRAKE_CACHE_DIR ?? join(homedir(), '.cache/keybrake');
  const dir = join(cache, 'bench-against', commit);
  const cli = join(dir, 'core-proxy/dist/cli.js');
  if (existsSync(join(dir, BUILT_MARKER)) && existsSync(cli)) {
    log(`${ref} (${built.shortCommit}): built before, in ${dir}`);
    return { ...built, cli };
  }
  log(`${ref} (${built.shortCommit}): checking out and building in ${dir}`);
  mkdirSync(join(cache, 'bench-against'), { recursive: true });
  // A checkout left by a build that was cut short: start again.
  rmSync(dir, { recursive: true, force: true });
  await run('git', ['-C', root, 'worktree', 'prune']);
  await run('git', ['-C', root, 'worktree', 'add', '--detach', '--force', dir, commit]);
  // The ref's own lockfile, only what its core proxy needs (and the root's TypeScript to build it).
  await run(
    'pnpm',
    ['install', '--frozen-lockfile', '--prefer-offline', '--filter', '.', '--filter', '@keybrake/core-proxy'],
    { cwd: dir, env: { ...process.env, CI: '1' }, maxBuffer: 64 * 1024 * 1024 },
  );
  await run('pnpm', ['exec', 'tsc', '-b', 'core-proxy'], { cwd: dir, maxBuffer: 64 * 1024 * 1024 });
  if (!existsSync(cli)) throw new Error(`building ${ref} left no ${cli}`);
  writeFileSync(join(dir, BUILT_MARKER), `${commit}\n`);
  return { ...built, cli };
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
