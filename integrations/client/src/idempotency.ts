import { createHash } from 'node:crypto';

/**
 * Derives an `Idempotency-Key` from the identity of one logical call: the same parts give the same
 * key (so a retry of the call is replayed, not charged again), different parts give different
 * keys. SHA-256 over the JSON array of the parts, base64url: 46 characters, far under the 255 the
 * proxy and Stripe accept, and collision-resistant whatever the parts contain.
 *
 * Feed it what stays the same across retries of one call and differs between executions:
 * - Temporal: `workflowId`, `activityId` (not the attempt number, not the run id if you want
 *   replay across continue-as-new to dedupe, else add `runId`), plus your own call name.
 * - Conductor: `workflowInstanceId`, `referenceTaskName` (not `taskId`, which changes per retry),
 *   plus your own call name or the item being processed.
 * - Argo: `{{workflow.uid}}`, `{{tasks.name}}` or `{{steps.name}}`, and `{{item}}` in a fan-out
 *   (not `{{pod.name}}` or `{{retries}}`, which change on retry; `{{node.name}}` of the step is
 *   stable but holds the workflow's name, not its uid).
 * - Cloud Workflows: the execution id, the step name, and the item of a `parallel for`.
 *
 * @example deriveIdempotencyKey([workflowId, activityId, 'charge', customerId])
 */
export function deriveIdempotencyKey(parts: readonly (string | number)[]): string {
  if (parts.length === 0) throw new TypeError('deriveIdempotencyKey needs at least one part');
  const canonical = JSON.stringify(parts.map((part) => String(part)));
  return `kb_${createHash('sha256').update(canonical).digest('base64url')}`;
}
