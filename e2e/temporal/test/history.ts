import type { temporal } from '@temporalio/proto';

type History = temporal.api.history.v1.IHistory;

/** Every string and every byte payload (decoded as UTF-8) in a workflow history, as one text. */
export function historyText(history: History): string {
  const parts: string[] = [];
  const walk = (value: unknown): void => {
    if (value === null || value === undefined) return;
    if (typeof value === 'string') parts.push(value);
    else if (value instanceof Uint8Array) parts.push(Buffer.from(value).toString('utf8'));
    else if (Array.isArray(value)) value.forEach(walk);
    else if (typeof value === 'object') Object.values(value).forEach(walk);
  };
  walk(history);
  return parts.join('\n');
}

/** Attempt numbers of the activities that started, and the failures of those that failed. */
export function activityOutcomes(history: History): {
  attempts: number[];
  failures: { type: string; nonRetryable: boolean }[];
} {
  const attempts: number[] = [];
  const failures: { type: string; nonRetryable: boolean }[] = [];
  for (const event of history.events ?? []) {
    const started = event.activityTaskStartedEventAttributes;
    if (started) attempts.push(started.attempt ?? 0);
    const failure = event.activityTaskFailedEventAttributes?.failure?.applicationFailureInfo;
    if (failure) failures.push({ type: failure.type ?? '', nonRetryable: failure.nonRetryable === true });
  }
  return { attempts, failures };
}
