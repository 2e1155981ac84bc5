/** What the proxy logs through: a stream whose writes queue in memory when its reader is slow. */
export interface LogStream {
  write(chunk: string): boolean;
  /** Bytes queued and not yet taken by the reader (Node's `writable.writableLength`). */
  readonly writableLength: number;
  once(event: 'drain', listener: () => void): unknown;
  on(event: 'error', listener: (error: Error) => void): unknown;
  removeListener(event: 'drain', listener: () => void): unknown;
}

/** Bytes of log lines a process queues for a stdout nobody reads before it drops lines. @default 4 MiB */
export const DEFAULT_LOG_BUFFER_BYTES = 4 * 1024 * 1024;

/** How long a stopping process waits for its queued log lines to leave. */
export const LOG_FLUSH_TIMEOUT_MS = 2_000;

/** Options of {@link LogDestination}. */
export interface LogDestinationOptions {
  /** @default process.stdout */
  readonly stream?: LogStream;
  /** @default {@link DEFAULT_LOG_BUFFER_BYTES} */
  readonly maxBufferedBytes?: number;
}

/**
 * The destination of a process's log lines (pino's and the `--workers` primary's): a write never
 * waits for the reader of stdout. Regression: the contract's "stops cleanly on SIGTERM/SIGINT".
 * pino's default destination (sonic-boom on fd 1) queued without bound while a stdout pipe was full
 * and, on `process.exit`, flushed synchronously, retrying EAGAIN every 100 ms for as long as the
 * pipe stayed full: `keybrake serve` never exited. Here lines go to Node's own stdout stream (a
 * pipe or socket is non-blocking: its writes queue in memory); past `maxBufferedBytes` queued, a
 * line is dropped and counted (`keybrake_log_lines_dropped_total`), and {@link flush} waits for the
 * queue a bounded time only. A stdout that fails (EPIPE: its reader is gone) drops every later line.
 */
export class LogDestination {
  private readonly stream: LogStream;
  private readonly maxBufferedBytes: number;
  private failed = false;
  /** Lines dropped because the queue was past its bound or stdout had failed. */
  dropped = 0;

  constructor(options: LogDestinationOptions = {}) {
    this.stream = options.stream ?? process.stdout;
    this.maxBufferedBytes = options.maxBufferedBytes ?? DEFAULT_LOG_BUFFER_BYTES;
    // An unhandled 'error' on stdout would crash the proxy: a log line is never worth a call.
    this.stream.on('error', () => {
      this.failed = true;
    });
  }

  /** Queues whole lines (pino writes one per call; the `--workers` primary a worker's chunk), or drops them. */
  write(lines: string): void {
    if (this.failed || this.stream.writableLength + Buffer.byteLength(lines) > this.maxBufferedBytes) {
      this.drop(lines);
      return;
    }
    try {
      this.stream.write(lines);
    } catch {
      // A synchronous destination (stdout a file) that failed, e.g. ENOSPC.
      this.drop(lines);
    }
  }

  private drop(lines: string): void {
    let count = 0;
    for (let at = lines.indexOf('\n'); at !== -1; at = lines.indexOf('\n', at + 1)) count += 1;
    this.dropped += Math.max(count, 1);
  }

  /** Resolves once the queued lines have left, or after `timeoutMs`, whichever comes first. */
  async flush(timeoutMs: number = LOG_FLUSH_TIMEOUT_MS): Promise<void> {
    if (this.failed || this.stream.writableLength === 0) return;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.stream.removeListener('drain', done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.stream.once('drain', done);
    });
  }
}

let processDestination: LogDestination | undefined;

/**
 * The process's one destination on stdout, made by the first call (its `maxBufferedBytes` is the
 * first caller's: `KEYBRAKE_LOG_BUFFER_BYTES`).
 */
export function processLogDestination(maxBufferedBytes?: number): LogDestination {
  processDestination ??= new LogDestination({ maxBufferedBytes });
  return processDestination;
}

/** Lines the process's destination dropped so far (0 before it exists). */
export function logLinesDropped(): number {
  return processDestination?.dropped ?? 0;
}

/** Flushes the process's destination (bounded), then exits with `code`. */
export function flushLogsAndExit(code: number): void {
  const destination = processDestination;
  if (destination === undefined) process.exit(code);
  void destination.flush().finally(() => process.exit(code));
}
