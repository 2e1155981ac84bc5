import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { WorkflowFailedError } from '@temporalio/client';
import {
  createKeybrakeActivities,
  keybrakeActivityInterceptors,
  keybrakeWorkflowInterceptorsPath,
} from '@keybrake/temporal';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stripeMockProxy, type TestProxy } from '../../../core-proxy/test/helpers.js';
import { startDroppingRelay } from '../../../integrations/client/test/dropping-proxy.js';
import * as activities from '../src/activities.js';
import type { BillingInput, BillingSummary, SupportSummary } from '../src/workflows.js';
import { activityOutcomes, historyText } from './history.js';

const WORKFLOWS = fileURLToPath(new URL('../src/workflows.ts', import.meta.url));
const SEAL_SECRET = `seal-${randomUUID()}`;

/** $1.00 to $5.00, deterministic per customer. */
const customers = (count: number) =>
  Array.from({ length: count }, (_, i) => ({ customerId: `cus_${i}`, amountCents: 100 + ((i * 7919) % 401) }));

let env: TestWorkflowEnvironment;

beforeAll(async () => {
  const path = process.env.TEMPORAL_CLI_BIN;
  if (!path) throw new Error('TEMPORAL_CLI_BIN is not set: run `pnpm e2e:temporal` (it installs the Temporal CLI).');
  env = await TestWorkflowEnvironment.createLocal({ server: { executable: { type: 'existing-path', path } } });
}, 120_000);

afterAll(async () => {
  await env?.teardown();
});

/** Runs a workflow on a real worker (own task queue) wired to Keybrake as a user would wire it. */
async function runOnWorker<T>(
  proxy: TestProxy,
  options: { proxyUrl?: string; seal?: boolean },
  run: (taskQueue: string) => Promise<T>,
): Promise<T> {
  const taskQueue = `keybrake-${randomUUID()}`;
  const sealSecret = options.seal === false ? undefined : SEAL_SECRET;
  const worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue,
    workflowsPath: WORKFLOWS,
    activities: {
      ...createKeybrakeActivities({ baseUrl: proxy.url, apiKey: proxy.apiKey, sealSecret }),
      ...activities,
    },
    interceptors: {
      activity: keybrakeActivityInterceptors({ proxyUrl: options.proxyUrl ?? proxy.url, sealSecret }),
      workflowModules: [keybrakeWorkflowInterceptorsPath],
    },
  });
  return worker.runUntil(run(taskQueue));
}

async function stripeProxy(): Promise<TestProxy> {
  return stripeMockProxy({ store: 'embedded' });
}

describe('Temporal integration on a real Temporal dev server (stripe-mock upstream)', () => {
  it('the 200-charge fan-out stops at the $300 cap: cap hits fail once, non-retryable; the key is revoked; no vault key in history', async () => {
    const proxy = await stripeProxy();
    const workflowId = `billing-${randomUUID()}`;
    const summary = await runOnWorker(proxy, {}, (taskQueue) =>
      env.client.workflow.execute<(input: BillingInput) => Promise<BillingSummary>>('billingWorkflow', {
        taskQueue,
        workflowId,
        args: [{ capUsd: 300, customers: customers(200) }],
      }),
    );
    expect(summary.charged + summary.capped).toBe(200);
    expect(summary.failed).toBe(0);
    expect(summary.chargedCents).toBeLessThanOrEqual(30_000);
    expect(summary.capped).toBeGreaterThan(0);

    const key = (await proxy.admin('GET', `/vault/keys/${summary.keyId}`)).body;
    expect(key.status).toBe('revoked');
    expect(key.spent_usd).toBeCloseTo(summary.chargedCents / 100, 6);
    expect(key.agent_run_label).toBe(`temporal/${workflowId}`);

    const history = await env.client.workflow.getHandle(workflowId).fetchHistory();
    const { attempts, failures } = activityOutcomes(history);
    const capFailures = failures.filter((f) => f.type === 'KeybrakeCapExhausted');
    expect(capFailures).toHaveLength(summary.capped);
    expect(capFailures.every((f) => f.nonRetryable)).toBe(true);
    expect(attempts.every((attempt) => attempt === 1)).toBe(true);

    const text = historyText(history);
    expect(text).toContain(summary.keyId);
    for (const vaultKey of proxy.issuedVaultKeys()) expect(text).not.toContain(vaultKey);
    console.log(
      `[figures] Temporal fan-out: 200 charge activities under $300: ${summary.charged} charged ($${(summary.chargedCents / 100).toFixed(2)}), ` +
        `${summary.capped} KeybrakeCapExhausted (non-retryable, attempt 1), key revoked`,
    );
  });

  it('a transient failure after the charge is retried by Temporal and replayed by the proxy: one charge upstream', async () => {
    const proxy = await stripeProxy();
    // stripe-node retries a reset connection once by itself, even with retries off; dropping
    // more responses than that makes the activity fail, so Temporal has to retry it.
    const relay = await startDroppingRelay(proxy.url, 3);
    const workflowId = `flaky-${randomUUID()}`;
    const summary = await runOnWorker(proxy, { proxyUrl: relay.url }, (taskQueue) =>
      env.client.workflow.execute<(input: BillingInput) => Promise<BillingSummary>>('billingWorkflow', {
        taskQueue,
        workflowId,
        args: [{ capUsd: 50, customers: [{ customerId: 'cus_flaky', amountCents: 1234 }] }],
      }),
    );
    expect(summary).toMatchObject({ charged: 1, chargedCents: 1234 });
    expect(relay.dropped()).toBeGreaterThanOrEqual(1);
    const { calls } = (await proxy.admin('GET', `/vault/keys/${summary.keyId}/calls`)).body;
    const outcomes: string[] = calls.map((c: { outcome: string }) => c.outcome);
    // The charge reached the vendor once; every retry (the SDK's and Temporal's) was replayed.
    expect(outcomes[0]).toBe('forwarded');
    expect(outcomes.length).toBeGreaterThanOrEqual(2);
    expect(outcomes.slice(1).every((outcome) => outcome === 'replayed')).toBe(true);
    expect(new Set(calls.map((c: { idempotency_key: string }) => c.idempotency_key)).size).toBe(1);
    expect((await proxy.admin('GET', `/vault/keys/${summary.keyId}`)).body.spent_usd).toBeCloseTo(12.34, 6);
    const { attempts } = activityOutcomes(await env.client.workflow.getHandle(workflowId).fetchHistory());
    // issue, charge, revoke: the charge activity needed more than one attempt.
    expect(Math.max(...attempts)).toBeGreaterThanOrEqual(2);
    console.log(
      `[figures] Temporal flaky charge: ${relay.dropped()} responses dropped, activity attempts ${JSON.stringify(attempts)}, ` +
        `proxy calls ${JSON.stringify(outcomes)}: charged upstream once`,
    );
  });

  it('an untrusted step holds a tainted child key: its charge is refused for good, its sibling charges', async () => {
    const proxy = await stripeProxy();
    const workflowId = `support-${randomUUID()}`;
    const summary = await runOnWorker(proxy, {}, (taskQueue) =>
      env.client.workflow.execute<(input: unknown) => Promise<SupportSummary>>('supportWorkflow', {
        taskQueue,
        workflowId,
        args: [
          {
            charge: { customerId: 'cus_paying', amountCents: 4200 },
            email: { customerId: 'cus_attacker', injectedChargeCents: 9900 },
          },
        ],
      }),
    );
    expect(summary).toMatchObject({ untrusted: 'KeybrakeTaintedRequestRefused', chargedCents: 4200 });

    // Two keys for this execution: its own, and its tainted child, both revoked at the end.
    const issued = proxy.issuedVaultKeys();
    expect(issued).toHaveLength(2);
    const execution = (await proxy.admin('GET', `/vault/keys/${summary.keyId}`)).body;
    expect(execution).toMatchObject({ status: 'revoked', tainted: false, spent_usd: 42 });
    const executionCalls = (await proxy.admin('GET', `/vault/keys/${summary.keyId}/calls`)).body.calls;
    const childId = /key_[A-Za-z0-9_-]{16}/g;
    const history = await env.client.workflow.getHandle(workflowId).fetchHistory();
    const text = historyText(history);
    const keyIds = [...new Set(text.match(childId) ?? [])];
    const child = (
      await Promise.all(keyIds.map(async (id) => (await proxy.admin('GET', `/vault/keys/${id}`)).body))
    ).find((key) => key.parent_key_id === summary.keyId);
    expect(child).toMatchObject({ tainted: true, status: 'revoked', spent_usd: 0 });
    expect(child.agent_run_label).toBe(`temporal/${workflowId}/untrusted`);
    const childCalls = (await proxy.admin('GET', `/vault/keys/${child.key_id}/calls`)).body.calls;
    // The tainted key read the customer (no cost, not sensitive), then its charge was refused once.
    expect(
      childCalls.map((c: { method: string; outcome: string; reason: string | null }) => [
        c.method,
        c.outcome,
        c.reason,
      ]),
    ).toEqual([
      ['GET', 'forwarded', null],
      ['POST', 'blocked', 'tainted_request_refused'],
    ]);
    expect(executionCalls.map((c: { outcome: string }) => c.outcome)).toEqual(['forwarded']);

    const { failures } = activityOutcomes(history);
    expect(failures).toEqual([{ type: 'KeybrakeTaintedRequestRefused', nonRetryable: true }]);
    for (const vaultKey of issued) expect(text).not.toContain(vaultKey);
    console.log(
      `[figures] Temporal taint: untrusted step ${summary.untrusted} after 1 attempt (child ${child.key_id}, tainted), sibling charged $${summary.chargedCents / 100}`,
    );
  });

  it('revokes the key when the workflow fails', async () => {
    const proxy = await stripeProxy();
    const workflowId = `failing-${randomUUID()}`;
    const error = await runOnWorker(proxy, {}, (taskQueue) =>
      env.client.workflow
        .execute('failingBillingWorkflow', { taskQueue, workflowId, args: [{ capUsd: 50, customers: customers(2) }] })
        .catch((e: unknown) => e),
    );
    expect(error).toBeInstanceOf(WorkflowFailedError);
    const issued = proxy.issuedVaultKeys();
    expect(issued).toHaveLength(1);
    const history = historyText(await env.client.workflow.getHandle(workflowId).fetchHistory());
    const keyId = /key_[A-Za-z0-9_-]{16}/.exec(history)?.[0];
    expect(keyId).toBeDefined();
    const key = (await proxy.admin('GET', `/vault/keys/${keyId}`)).body;
    expect(key.status).toBe('revoked');
    expect(key.spent_usd).toBeGreaterThan(0);
  });

  it('revokes the key when the workflow is cancelled', async () => {
    const proxy = await stripeProxy();
    const workflowId = `cancelled-${randomUUID()}`;
    const error = await runOnWorker(proxy, {}, async (taskQueue) => {
      const handle = await env.client.workflow.start('awaitingApprovalWorkflow', {
        taskQueue,
        workflowId,
        args: [{ capUsd: 50, customers: customers(1) }],
      });
      // Wait until the charge is done and the workflow sleeps on its timer, then cancel it.
      for (let i = 0; i < 200; i += 1) {
        const { events } = await handle.fetchHistory();
        if (events?.some((event) => event.timerStartedEventAttributes)) break;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      await handle.cancel();
      return handle.result().catch((e: unknown) => e);
    });
    expect(error).toBeInstanceOf(WorkflowFailedError);
    expect((error as WorkflowFailedError).cause?.name).toBe('CancelledFailure');
    const keyId = /key_[A-Za-z0-9_-]{16}/.exec(
      historyText(await env.client.workflow.getHandle(workflowId).fetchHistory()),
    )?.[0];
    const key = (await proxy.admin('GET', `/vault/keys/${keyId}`)).body;
    expect(key.status).toBe('revoked');
    expect(key.spent_usd).toBeGreaterThan(0);
  });

  it('without the sealing option the vault key does appear in history (what the option protects against)', async () => {
    const proxy = await stripeProxy();
    const workflowId = `unsealed-${randomUUID()}`;
    await runOnWorker(proxy, { seal: false }, (taskQueue) =>
      env.client.workflow.execute('billingWorkflow', {
        taskQueue,
        workflowId,
        args: [{ capUsd: 50, customers: customers(1) }],
      }),
    );
    const text = historyText(await env.client.workflow.getHandle(workflowId).fetchHistory());
    const [vaultKey] = proxy.issuedVaultKeys();
    expect(vaultKey).toBeDefined();
    expect(text).toContain(vaultKey);
  });
});
