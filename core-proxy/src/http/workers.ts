import cluster, { type Worker } from 'node:cluster';
import type { FastifyInstance } from 'fastify';
import type { KeybrakeConfig } from '../config.js';
import type { Readable } from 'node:stream';
import {
  LOG_FLUSH_TIMEOUT_MS,
  type LogDestination,
  flushLogsAndExit,
  processLogDestination,
} from './log-destination.js';
import { startServer } from './server.js';

/** What the primary and its workers say to each other over the cluster channel. */
type WorkerMessage =
  | { readonly type: 'keybrake:opened' }
  | { readonly type: 'keybrake:listen' }
  | { readonly type: 'keybrake:listening' }
  | { readonly type: 'keybrake:drain' };

function isWorkerMessage(message: unknown, type: WorkerMessage['type']): boolean {
  return typeof message === 'object' && message !== null && (message as { type?: unknown }).type === type;
}

/** A worker's log lines, passed on whole (never a line cut between two workers' chunks) to the primary's destination. */
function passLines(from: Readable, destination: LogDestination): void {
  let partial = '';
  from.setEncoding('utf8');
  from.on('data', (chunk: string) => {
    const end = chunk.lastIndexOf('\n');
    if (end === -1 && partial.length + chunk.length < 64 * 1024) {
      partial += chunk;
      return;
    }
    const whole = end === -1 ? partial + chunk : partial + chunk.slice(0, end + 1);
    partial = end === -1 ? '' : chunk.slice(end + 1);
    destination.write(whole);
  });
  from.on('end', () => {
    if (partial !== '') destination.write(`${partial}\n`);
  });
}

/** Options of {@link startWorkers}. */
export interface WorkersOptions {
  /** Crashes within {@link WorkersOptions.crashWindowMs} after which the primary gives up. @default 5 */
  readonly maxCrashes?: number;
  /** @default 60000 */
  readonly crashWindowMs?: number;
}

/** A JSON log line of the primary, in pino's shape (level 30 info, 40 warn, 50 error) beside its workers' lines. */
function log(level: 30 | 40 | 50, message: string, fields: Record<string, unknown> = {}): void {
  // Through the bounded destination its workers' pino lines use: a full stdout pipe cannot hold a signal.
  processLogDestination().write(
    `${JSON.stringify({ level, time: Date.now(), pid: process.pid, role: 'primary', ...fields, msg: message })}\n`,
  );
}

/**
 * `keybrake serve --workers N` (or `KEYBRAKE_WORKERS`): the primary process. It forks N workers
 * (node:cluster) that share one port and one data directory, and keeps them running.
 *
 * What runs once and what per worker:
 * - Recovery of a dead process's reservations is the store's: each embedded-store process owns
 *   its reservations under a lock file the kernel drops when it dies, and the store recovers a
 *   dead owner's (never a live one's) as unknown spend when it opens and every 30 s after.
 * - The first workers listen together, once every one of them has opened the store: the port opens
 *   when all are ready, so the first connections are spread over all of them.
 * - A worker that crashes is replaced at once; the others keep serving. Its in-flight calls mean
 *   what a crashed process's do: reserved, then recovered as unknown spend (by its replacement,
 *   which opens the store). After `maxCrashes` crashes within `crashWindowMs` the primary stops.
 * - Everything else is per worker and safe to be: each worker signs audit checkpoints of the one
 *   chain as replicas do (the store keeps one checkpoint per head), holds its own deferred
 *   settlements, and its own `/metrics` (a scrape sees the worker that answered it).
 * - SIGTERM or SIGINT to the primary (or to the whole process group) drains every worker and
 *   exits 0 once all have; a second signal kills them.
 * - Logs: every worker writes its own pino lines (their `pid` tells them apart) to a pipe to the
 *   primary, which passes them on whole to stdout with its own lines (`role: "primary"`), through
 *   one bounded `LogDestination`: a stdout nobody reads drops lines instead of holding a call or a
 *   signal. The primary counts the drops; a worker's `keybrake_log_lines_dropped_total` counts
 *   only what its own pipe to the primary dropped.
 */
export function startWorkers(config: KeybrakeConfig, options: WorkersOptions = {}): void {
  const maxCrashes = options.maxCrashes ?? 5;
  const crashWindowMs = options.crashWindowMs ?? 60_000;
  const crashes: number[] = [];
  const destination = processLogDestination(config.logBufferBytes);
  // The workers' stdout and stderr are pipes to the primary, which passes their lines on: forked
  // with the primary's own stdout, each fork would make that pipe blocking again (libuv clears
  // O_NONBLOCK on a child's inherited stdio, and the flag belongs to the pipe, not the process),
  // and the primary's next log line to a full pipe would hold it, signals and all.
  cluster.setupPrimary({ silent: true });
  /** Workers' output streams not yet ended: the primary exits once they have (or after the flush bound). */
  const outputs = new Set<Readable>();
  const exit = (code: number): void => {
    const ended = [...outputs].map((stream) => new Promise((resolve) => stream.once('close', resolve)));
    const bound = new Promise((resolve) => setTimeout(resolve, LOG_FLUSH_TIMEOUT_MS).unref());
    void Promise.race([Promise.all(ended), bound]).then(() => flushLogsAndExit(code));
  };
  /** Workers the primary asked to stop: their exit is no crash. */
  const stopping = new WeakSet<Worker>();
  let shuttingDown = false;
  let exitCode = 0;
  /** The first workers, until they all listen; a worker forked after that listens once it has opened the store. */
  const starting = new Set<Worker>();
  const opened = new Set<Worker>();
  let started = false;

  /** Forks worker `index`; the first ones listen together once all have opened the store, a replacement at once. */
  const fork = (index: number, replacement: boolean): void => {
    // With KEYBRAKE_PORT=0 a replacement still gets the others' port: node:cluster shares one
    // handle per address among the workers' first listen(0).
    const worker = cluster.fork({ KEYBRAKE_WORKER_INDEX: String(index) });
    const { stdout, stderr } = worker.process;
    if (stdout) {
      outputs.add(stdout);
      stdout.once('close', () => outputs.delete(stdout));
      passLines(stdout, destination);
    }
    stderr?.pipe(process.stderr, { end: false });
    if (!replacement) starting.add(worker);
    opened.delete(worker);
    worker.on('message', (message: unknown) => {
      if (isWorkerMessage(message, 'keybrake:opened')) {
        if (shuttingDown) return;
        if (replacement) {
          worker.send({ type: 'keybrake:listen' } satisfies WorkerMessage);
          return;
        }
        opened.add(worker);
        if (opened.size === starting.size) {
          started = true;
          for (const each of starting) each.send({ type: 'keybrake:listen' } satisfies WorkerMessage);
        }
      } else if (isWorkerMessage(message, 'keybrake:listening')) {
        log(30, 'worker listening', { worker: index, workerPid: worker.process.pid, replacement });
      }
    });
    worker.on('exit', (code, signal) => onExit(worker, index, code, signal));
  };

  const drain = (worker: Worker): void => {
    stopping.add(worker);
    if (worker.isConnected()) worker.send({ type: 'keybrake:drain' } satisfies WorkerMessage);
    else worker.process.kill('SIGTERM');
  };

  const alive = (): Worker[] =>
    Object.values(cluster.workers ?? {}).filter((each): each is Worker => each !== undefined && !each.isDead());

  const shutdown = (signal: NodeJS.Signals): void => {
    if (shuttingDown) {
      log(40, 'second signal: killing the workers', { signal });
      for (const worker of alive()) worker.process.kill('SIGKILL');
      process.exit(1);
    }
    shuttingDown = true;
    log(30, 'draining every worker', { signal });
    for (const worker of alive()) drain(worker);
    if (alive().length === 0) exit(exitCode);
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);

  const onExit = (worker: Worker, index: number, code: number | null, signal: string | null): void => {
    if (shuttingDown || stopping.has(worker)) {
      if (code !== 0) exitCode = 1;
      if (alive().length === 0) {
        log(30, 'every worker stopped', { exitCode });
        exit(exitCode);
      }
      return;
    }
    if (code === 0 && signal === null) {
      // A worker drains and exits 0 only on a signal of its own (a group signal or one sent to
      // it): the whole server stops, as a single process would.
      shutdown('SIGTERM');
      return;
    }
    const now = Date.now();
    crashes.push(now);
    while (crashes.length > 0 && crashes[0]! < now - crashWindowMs) crashes.shift();
    log(50, 'worker crashed: starting another', { worker: index, workerPid: worker.process.pid, code, signal });
    if (crashes.length > maxCrashes) {
      log(50, `workers crashed ${crashes.length} times within ${crashWindowMs} ms: giving up`);
      exitCode = 1;
      shutdown('SIGTERM');
      return;
    }
    // A first worker that died before they all listened is replaced among them (the others wait).
    starting.delete(worker);
    opened.delete(worker);
    fork(index, started);
  };

  for (let index = 0; index < config.workers; index += 1) fork(index, false);
  log(30, 'workers starting', { workers: config.workers });
}

/**
 * One worker of {@link startWorkers}: opens the store and builds the app, says so, listens when
 * the primary says every worker has opened, and drains on the primary's word, on SIGTERM/SIGINT
 * or when the primary is gone.
 */
export async function runWorker(config: KeybrakeConfig): Promise<void> {
  let listen: () => void = () => undefined;
  const mayListen = new Promise<void>((resolve) => (listen = resolve));
  // Until it listens, a worker has no call in flight: it stops at once.
  let drainNow: () => void = () => process.exit(0);
  const drain = (): void => drainNow();
  process.on('message', (message: unknown) => {
    if (isWorkerMessage(message, 'keybrake:listen')) listen();
    else if (isWorkerMessage(message, 'keybrake:drain')) drain();
  });
  // The primary died (or closed the channel): nobody restarts or stops this worker any more.
  process.on('disconnect', drain);
  process.on('SIGTERM', drain);
  process.on('SIGINT', drain);
  let app: FastifyInstance;
  try {
    app = await startServer(config, {
      handleSignals: false,
      beforeListen: async () => {
        process.send?.({ type: 'keybrake:opened' } satisfies WorkerMessage);
        await mayListen;
      },
    });
  } catch (error) {
    // A worker that cannot listen (or open its store) exits, so that the primary sees it fail.
    process.stderr.write(`keybrake worker: ${(error as Error).message}\n`);
    process.exit(1);
  }
  process.send?.({ type: 'keybrake:listening' } satisfies WorkerMessage);
  let closing = false;
  drainNow = () => {
    if (closing) return;
    closing = true;
    app.log.info('draining in-flight calls');
    app.close().then(
      () => flushLogsAndExit(0),
      (error: unknown) => {
        app.log.error({ err: error }, 'shutdown failed');
        flushLogsAndExit(1);
      },
    );
  };
}

/** `keybrake serve`: one process, or a primary and its workers when `config.workers` > 1. */
export async function serve(config: KeybrakeConfig): Promise<void> {
  if (config.workers <= 1) {
    await startServer(config);
  } else if (cluster.isPrimary) {
    if (config.generatedApiKey) {
      process.stderr.write(
        `\nKEYBRAKE_API_KEYS is not set (dev mode): issuer key, kept in ${config.dataDir}/dev-issuer-key:\n  ${config.apiKeys[0]}\n\n`,
      );
    }
    startWorkers(config);
  } else {
    await runWorker(config);
  }
}
