/** Options of {@link SerialRounds}. */
export interface SerialRoundsOptions<T> {
  /** One round; a rejection is the round's failure (reported by the round itself). */
  readonly round: () => Promise<T>;
  /** The wait after a round that finished with `outcome` before the next one, ms. */
  readonly nextDelayMs: (outcome: T) => number;
  /** The wait after a failed round before the next one, ms. */
  readonly retryDelayMs: number;
}

/**
 * Rounds of work on a timer, one at a time: the timer's rounds and `runOnce`'s never overlap, and
 * each waits for the one before it to settle. The archiver and the expiry purger run their rounds
 * this way, under the archiver lease.
 */
export class SerialRounds<T> {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> = Promise.resolve();
  private halted = false;

  constructor(private readonly options: SerialRoundsOptions<T>) {}

  /** True from `stop()` until the next `start()`: a round in flight checks it to end early. */
  get stopped(): boolean {
    return this.halted;
  }

  /**
   * Starts the timer: the first round after `firstDelayMs` (once it resolves, when it is a
   * promise; a `stop()` meanwhile wins).
   */
  start(firstDelayMs: number | Promise<number>): void {
    this.halted = false;
    if (typeof firstDelayMs === 'number') this.schedule(firstDelayMs);
    else void firstDelayMs.then((delayMs) => this.schedule(delayMs));
  }

  /** Stops the timer and waits for the round in flight to settle. */
  async stop(): Promise<void> {
    this.halted = true;
    clearTimeout(this.timer);
    await this.running.catch(() => undefined);
  }

  /** One round, after the one in flight (whatever its outcome). */
  runOnce(): Promise<T> {
    const round = this.running.catch(() => undefined).then(() => this.options.round());
    this.running = round;
    return round;
  }

  private schedule(delayMs: number): void {
    if (this.halted) return;
    this.timer = setTimeout(() => {
      void this.runOnce().then(
        (outcome) => this.schedule(this.options.nextDelayMs(outcome)),
        () => this.schedule(this.options.retryDelayMs),
      );
    }, delayMs);
    this.timer.unref();
  }
}
