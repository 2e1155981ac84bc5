import autocannon from 'autocannon';
import type { Target } from './variants.js';

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

/** Runs autocannon against the targets at once, the connections and rate split evenly between them. */
export async function runLoad(targets: readonly Target[], options: LoadOptions): Promise<LoadResult> {
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
