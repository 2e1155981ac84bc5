import autocannon from 'autocannon';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { Target } from './variants.js';

const run = promisify(execFile);

/** One load run's outcome. Latencies in milliseconds. */
export interface LoadResult {
  readonly requests: number;
  readonly requestsPerSecond: number;
  readonly p50: number;
  readonly p99: number;
  readonly p999: number;
  readonly errors: number;
  readonly non2xx: number;
  readonly durationSeconds: number;
}

export interface LoadOptions {
  readonly durationSeconds: number;
  readonly connections: number;
  /** Requests per second over all targets; unset: as fast as the connections go. */
  readonly rate?: number;
  /**
   * The oha binary to run a fixed-rate load with (open loop, evenly paced, latency measured from
   * each request's scheduled start: coordinated omission corrected). Unset: autocannon.
   */
  readonly oha?: string;
}

/** Nearest-rank percentile of sorted samples. */
function percentile(sorted: readonly number[], fraction: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil(fraction * sorted.length) - 1)]!;
}

/**
 * autocannon's own percentiles are whole milliseconds, too coarse for a proxy's overhead; the
 * `response` event carries each request's time as a float from `process.hrtime`, which is used
 * instead. Its coordinated-omission correction is off: with a fixed rate it fills 1 ms gaps and
 * doubles the sample count.
 */
function runOne(target: Target, options: LoadOptions, share: number, samples: number[]): Promise<autocannon.Result> {
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url: `${target.url}${target.path}`,
        method: target.method,
        headers: target.headers,
        body: target.body,
        connections: Math.max(1, Math.round(options.connections * share)),
        duration: options.durationSeconds,
        ...(options.rate === undefined
          ? {}
          : { overallRate: Math.max(1, Math.round(options.rate * share)), ignoreCoordinatedOmission: true }),
      },
      (error, result) => (error ? reject(error) : resolve(result)),
    );
    instance.on('response', (_client, _status, _bytes, responseTime) => {
      samples.push(responseTime);
    });
  });
}

/** What `oha --output-format json` prints, the parts read here (times in seconds). */
interface OhaOutput {
  readonly summary: { readonly total: number; readonly requestsPerSec: number };
  readonly latencyPercentiles: Readonly<Record<'p50' | 'p99' | 'p99.9', number | null>>;
  readonly statusCodeDistribution: Readonly<Record<string, number>>;
  readonly errorDistribution: Readonly<Record<string, number>>;
}

/**
 * One oha run at a fixed rate against one target: `-q` paces the requests evenly over each second
 * (not as a burst per second, as autocannon does), `--latency-correction` measures each from when
 * it was due, so a stall of the proxy counts against every request it delayed.
 */
async function runOha(oha: string, target: Target, options: LoadOptions, share: number): Promise<LoadResult> {
  if (options.rate === undefined) throw new Error('oha runs only fixed-rate loads here');
  const args = [
    '--no-tui',
    '--output-format',
    'json',
    '--latency-correction',
    // Requests still in flight at the end are waited for, not counted as errors.
    '--wait-ongoing-requests-after-deadline',
    '-z',
    `${options.durationSeconds}s`,
    '-c',
    String(Math.max(1, Math.round(options.connections * share))),
    '-q',
    String(Math.max(1, Math.round(options.rate * share))),
    '-m',
    target.method,
    ...Object.entries(target.headers).flatMap(([name, value]) => ['-H', `${name}: ${value}`]),
    '-d',
    target.body,
    `${target.url}${target.path}`,
  ];
  const { stdout } = await run(oha, args, { maxBuffer: 64 * 1024 * 1024 });
  const output = JSON.parse(stdout) as OhaOutput;
  const ms = (seconds: number | null | undefined): number =>
    seconds === null || seconds === undefined ? Number.NaN : seconds * 1000;
  const statuses = Object.entries(output.statusCodeDistribution);
  const requests = statuses.reduce((sum, [, count]) => sum + count, 0);
  return {
    requests,
    requestsPerSecond: requests / output.summary.total,
    p50: ms(output.latencyPercentiles.p50),
    p99: ms(output.latencyPercentiles.p99),
    p999: ms(output.latencyPercentiles['p99.9']),
    errors: Object.values(output.errorDistribution).reduce((sum, count) => sum + count, 0),
    non2xx: statuses.filter(([status]) => !status.startsWith('2')).reduce((sum, [, count]) => sum + count, 0),
    durationSeconds: output.summary.total,
  };
}

/**
 * Runs the load against the targets at once, the connections and rate split evenly between them:
 * with oha (a fixed rate and `options.oha` set) or autocannon. With several targets under oha,
 * each percentile is the highest of the targets' (oha reports percentiles, not samples).
 */
export async function runLoad(targets: readonly Target[], options: LoadOptions): Promise<LoadResult> {
  const share = 1 / targets.length;
  if (options.oha !== undefined && options.rate !== undefined) {
    const oha = options.oha;
    const results = await Promise.all(targets.map((target) => runOha(oha, target, options, share)));
    const requests = results.reduce((sum, result) => sum + result.requests, 0);
    const seconds = Math.max(...results.map((result) => result.durationSeconds));
    const highest = (field: 'p50' | 'p99' | 'p999'): number => Math.max(...results.map((result) => result[field]));
    return {
      requests,
      requestsPerSecond: requests / seconds,
      p50: highest('p50'),
      p99: highest('p99'),
      p999: highest('p999'),
      errors: results.reduce((sum, result) => sum + result.errors, 0),
      non2xx: results.reduce((sum, result) => sum + result.non2xx, 0),
      durationSeconds: seconds,
    };
  }
  return runAutocannon(targets, options);
}

async function runAutocannon(targets: readonly Target[], options: LoadOptions): Promise<LoadResult> {
  const share = 1 / targets.length;
  const samples: number[] = [];
  const results = await Promise.all(targets.map((target) => runOne(target, options, share, samples)));
  const requests = results.reduce((sum, result) => sum + result.requests.total, 0);
  const seconds = Math.max(...results.map((result) => result.duration));
  samples.sort((a, b) => a - b);
  return {
    requests,
    requestsPerSecond: requests / seconds,
    p50: percentile(samples, 0.5),
    p99: percentile(samples, 0.99),
    p999: percentile(samples, 0.999),
    errors: results.reduce((sum, result) => sum + result.errors + result.timeouts, 0),
    non2xx: results.reduce((sum, result) => sum + result.non2xx, 0),
    durationSeconds: seconds,
  };
}
