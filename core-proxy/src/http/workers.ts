import cluster, { type Worker } from 'node:cluster';
import type { KeybrakeConfig } from '../config.js';
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

/** Options of {@link startWorkers}. */
export interface WorkersOptions {
  /** Crashes within {@link WorkersOptions.crashWindowMs} after which the primary gives up. @default 5 */
  readonly maxCrashes?: number;
  /** @default 60000 */
  readonly crashWindowMs?: number;
}

/** A JSON log line of the primary, in pino's shape (level 30 info, 40 warn, 50 error) beside its workers' lines. */
function log(level: 30 | 40 | 50, message: string, fields: Record<string, unknown> = {}): void {
  process.stdout.write(
    `${JSON.stringify({ level, time: Date.now(), pid: process.pid, role: 'primary', ...fields, msg: message })}\n`,
  );
}

/**
 * `keybrake serve --workers N` (or `KEYBRAKE_WORKERS`): the primary process. It forks N workers
 * (node:cluster) that share one port and one data directory, and keeps them running.
 *
 * What runs once and what per worker:
 * - Start-up recovery runs once per generation of workers: the embedded store turns every
 *   reservation left in its file into unknown spend when it opens, which is right only while no
 *   other process is making calls. So every worker opens its store first, and only once all of
 *   them have (their recovery done) do they start listening.
 * - A worker that crashes has left its in-flight calls reserved, as a crashed single process does.
 *   Recovering them is what a start does, and a start must not run beside live workers, so the
 *   primary drains the other workers (their in-flight calls finish and settle) and starts a new
 *   generation; the port refuses connections for that moment, as a restarting process's does.
 * - Everything else is per worker and safe to be: each worker signs audit checkpoints of the one
 *   chain as replicas do (the store keeps one checkpoint per head), holds its own deferred
 *   settlements, and its own `/metrics` (a scrape sees the worker that answered it).
 * - SIGTERM or SIGINT to the primary (or to the whole process group) drains every worker and
 *   exits 0 once all have; a second signal kills them.
 * - Logs: every worker writes its own pino lines (their `pid` tells them apart) to the shared
 *   stdout, the primary its own lines with `role: "primary"`.
 */
export function startWorkers(config: KeybrakeConfig, options: WorkersOptions = {}): void {
  const maxCrashes = options.maxCrashes ?? 5;
  const crashWindowMs = options.crashWindowMs ?? 60_000;
  const crashes: number[] = [];
  let generation = 0;
  let current = new Set<Worker>();
  /** Workers the primary asked to stop: their exit is no crash. */
  const stopping = new WeakSet<Worker>();
  let shuttingDown = false;
  let exitCode = 0;
  // With KEYBRAKE_PORT=0 the first generation's port is kept for the next ones.
  let port = config.port;
  cluster.on('listening', (_worker, address) => {
    if (port === 0) port = address.port;
  });

  const startGeneration = (): void => {
    generation += 1;
    const workers = new Set<Worker>();
    current = workers;
    const opened = new Set<Worker>();
    for (let index = 0; index < config.workers; index += 1) {
      const worker = cluster.fork({
        KEYBRAKE_WORKER_INDEX: String(index),
        ...(port === 0 ? {} : { KEYBRAKE_PORT: String(port) }),
      });
      workers.add(worker);
      worker.on('message', (message: unknown) => {
        if (isWorkerMessage(message, 'keybrake:opened')) {
          opened.add(worker);
          // Nobody listens before every worker of the generation has opened (and recovered) its store.
          if (opened.size === workers.size && !shuttingDown)
            for (const each of workers) each.send({ type: 'keybrake:listen' } satisfies WorkerMessage);
        } else if (isWorkerMessage(message, 'keybrake:listening')) {
          log(30, 'worker listening', { worker: index, workerPid: worker.process.pid, generation });
        }
      });
    }
    log(30, 'workers starting', { workers: config.workers, generation });
  };

  const drain = (worker: Worker): void => {
    stopping.add(worker);
    if (worker.isConnected()) worker.send({ type: 'keybrake:drain' } satisfies WorkerMessage);
    else worker.process.kill('SIGTERM');
  };

  const shutdown = (signal: NodeJS.Signals): void => {
    if (shuttingDown) {
      log(40, 'second signal: killing the workers', { signal });
      for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGKILL');
      process.exit(1);
    }
    shuttingDown = true;
    log(30, 'draining every worker', { signal });
    for (const worker of Object.values(cluster.workers ?? {})) if (worker) drain(worker);
    if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(exitCode);
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);

  cluster.on('exit', (worker, code, signal) => {
    const alive = Object.values(cluster.workers ?? {}).filter((each) => each && !each.isDead()).length;
    if (shuttingDown || stopping.has(worker)) {
      if (code !== 0) exitCode = 1;
      if (shuttingDown && alive === 0) process.exit(exitCode);
      if (!shuttingDown && alive === 0) startGeneration();
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
    log(50, 'worker crashed: restarting every worker (in-flight calls of the others finish first)', {
      workerPid: worker.process.pid,
      code,
      signal,
      generation,
    });
    if (crashes.length > maxCrashes) {
      log(50, `workers crashed ${crashes.length} times within ${crashWindowMs} ms: giving up`);
      exitCode = 1;
      shutdown('SIGTERM');
      return;
    }
    const survivors = [...current].filter((each) => each !== worker && !each.isDead());
    for (const survivor of survivors) drain(survivor);
    if (alive === 0) startGeneration();
  });

  startGeneration();
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
  const app = await startServer(config, {
    handleSignals: false,
    beforeListen: async () => {
      process.send?.({ type: 'keybrake:opened' } satisfies WorkerMessage);
      await mayListen;
    },
  });
  process.send?.({ type: 'keybrake:listening' } satisfies WorkerMessage);
  let closing = false;
  drainNow = () => {
    if (closing) return;
    closing = true;
    app.log.info('draining in-flight calls');
    app.close().then(
      () => process.exit(0),
      (error: unknown) => {
        app.log.error({ err: error }, 'shutdown failed');
        process.exit(1);
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
