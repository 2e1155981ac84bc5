import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import {
  createKeybrakeActivities,
  keybrakeActivityInterceptors,
  keybrakeWorkflowInterceptorsPath,
} from '@keybrake/temporal';
import { deriveIdempotencyKey } from '@keybrake/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  startHoldingChargeVendor,
  startProxy,
  stripeMockProxy,
  type TestProxy,
} from '../../../core-proxy/test/helpers.js';
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

/**
 * A fan-out stopped by its cap: the key revoked, its spend what the workflow charged, its label the
 * workflow's; each cap hit a non-retryable KeybrakeCapExhausted. The history and the activities'
 * attempts, for what each test checks beyond that.
 */
async function expectCapStoppedFanOut(
  proxy: TestProxy,
  workflowId: string,
  summary: { keyId: string; capped: number; chargedCents: number },
): Promise<{ history: Awaited<ReturnType<WorkflowHandle['fetchHistory']>>; attempts: number[] }> {
  const key = (await proxy.admin('GET', `/vault/keys/${summary.keyId}`)).body;
  expect(key.status).toBe('revoked');
  expect(key.spent_usd).toBeCloseTo(summary.chargedCents / 100, 6);
  expect(key.agent_run_label).toBe(`temporal/${workflowId}`);

  const history = await env.client.workflow.getHandle(workflowId).fetchHistory();
  const { attempts, failures } = activityOutcomes(history);
  const capFailures = failures.filter((f) => f.type === 'KeybrakeCapExhausted');
  expect(capFailures).toHaveLength(summary.capped);
  expect(capFailures.every((f) => f.nonRetryable)).toBe(true);
  return { history, attempts };
}

/** Cancels a workflow once it sleeps on its timer (its charge done), looking up to `polls` times 50 ms apart. */
async function cancelOnceSleeping(handle: WorkflowHandle, polls: number): Promise<unknown> {
  for (let i = 0; i < polls; i += 1) {
    const { events } = await handle.fetchHistory();
    if (events?.some((event) => event.timerStartedEventAttributes)) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  await handle.cancel();
  return handle.result().catch((e: unknown) => e);
}

/** The vault key a workflow's history names (by its id: the history never holds the key itself), as the admin API shows it. */
async function keyNamedInHistory(proxy: TestProxy, workflowId: string): Promise<Record<string, any>> {
  const keyId = /key_[A-Za-z0-9_-]{16}/.exec(
    historyText(await env.client.workflow.getHandle(workflowId).fetchHistory()),
  )?.[0];
  expect(keyId).toBeDefined();
  return (await proxy.admin('GET', `/vault/keys/${keyId}`)).body;
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

    const { history, attempts } = await expectCapStoppedFanOut(proxy, workflowId, summary);
    expect(attempts.every((attempt) => attempt === 1)).toBe(true);

    const text = historyText(history);
    expect(text).toContain(summary.keyId);
    for (const vaultKey of proxy.issuedVaultKeys()) expect(text).not.toContain(vaultKey);
    console.log(
      `[figures] Temporal fan-out: 200 charge activities under $300: ${summary.charged} charged ($${(summary.chargedCents / 100).toFixed(2)}), ` +
        `${summary.capped} KeybrakeCapExhausted (non-retryable, attempt 1), key revoked`,
    );
  });

  it('issue 26: a 20-charge fan-out on a max_concurrent 2 key (fake vendor of ours holding the first charge until the limit has refused a call): limit 429s are retried (KeybrakeConcurrencyLimited, after Retry-After) and charged; the cap hit stays terminal', async () => {
    const started: { proxy?: TestProxy } = {};
    const vendor = await startHoldingChargeVendor(() => started.proxy, { holdFirst: 2 });
    const proxy = await startProxy({ store: 'embedded', env: { KEYBRAKE_STRIPE_BASE_URL: vendor.url } });
    started.proxy = proxy;
    const workflowId = `limited-${randomUUID()}`;
    // Twenty $1 charges under $19.50: nineteen fit, one is a cap hit.
    const list = Array.from({ length: 20 }, (_, i) => ({ customerId: `cus_${i}`, amountCents: 100 }));
    const summary = await runOnWorker(proxy, {}, (taskQueue) =>
      env.client.workflow.execute<(input: BillingInput) => Promise<BillingSummary>>('limitedBillingWorkflow', {
        taskQueue,
        workflowId,
        args: [{ capUsd: 19.5, customers: list }],
      }),
    );
    expect(summary).toMatchObject({ charged: 19, capped: 1, failed: 0 });
    const history = await env.client.workflow.getHandle(workflowId).fetchHistory();
    const { failures } = activityOutcomes(history);
    const capFailures = failures.filter((f) => f.type === 'KeybrakeCapExhausted');
    expect(capFailures).toHaveLength(1);
    expect(capFailures[0]!.nonRetryable).toBe(true);
    const calls = (await proxy.admin('GET', `/vault/keys/${summary.keyId}/calls`)).body.calls as {
      reason: string | null;
    }[];
    const limited = calls.filter((call) => call.reason === 'concurrency_limited').length;
    // 20 activities at once against a limit of 2: refusals happened, and each was retried.
    expect(limited).toBeGreaterThan(0);
    expect(calls.filter((call) => call.reason === 'cap_exhausted')).toHaveLength(1);
    expect(vendor.charges()).toBe(19);
    expect(vendor.maxInFlight()).toBeLessThanOrEqual(2);
    console.log(
      `[figures] issue 26 Temporal fan-out (max_concurrent 2): 19 charged, 1 cap hit (non-retryable), ${limited} KeybrakeConcurrencyLimited retried after Retry-After`,
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
      return cancelOnceSleeping(handle, 200);
    });
    expect(error).toBeInstanceOf(WorkflowFailedError);
    expect((error as WorkflowFailedError).cause?.name).toBe('CancelledFailure');
    const key = await keyNamedInHistory(proxy, workflowId);
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

// ---------------------------------------------------------------------------------------------
// issue 24: a Python worker (temporalio + keybrake.temporal) on the same dev server: a Python
// workflow fanning out Python charge activities under one vault key.

const PYTHON_WORKER = fileURLToPath(
  new URL('../../../integrations/python/e2e/temporal_billing_worker.py', import.meta.url),
);

interface PythonBillingSummary {
  keyId: string;
  charged: number;
  capped: number;
  failed: number;
  chargedCents: number;
  paymentIntents: string[];
}

/** Runs the Python worker on its own task queue while `run` runs, then stops it. */
async function runOnPythonWorker<T>(
  proxy: TestProxy,
  options: { proxyUrl?: string },
  run: (taskQueue: string) => Promise<T>,
): Promise<T> {
  const python =
    process.env.KEYBRAKE_PYTHON ??
    fileURLToPath(new URL('../../../integrations/python/.venv/bin/python', import.meta.url));
  if (!existsSync(python)) throw new Error('no Python environment: run `bash scripts/install-python.sh`');
  const taskQueue = `keybrake-py-${randomUUID()}`;
  const child = spawn(python, [PYTHON_WORKER], {
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '',
      TEMPORAL_ADDRESS: env.address,
      TEMPORAL_TASK_QUEUE: taskQueue,
      KEYBRAKE_URL: proxy.url,
      KEYBRAKE_ISSUER_KEY: proxy.apiKey,
      KEYBRAKE_PROXY_URL: options.proxyUrl ?? proxy.url,
      KEYBRAKE_SEAL_SECRET: SEAL_SECRET,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    return await Promise.race([
      run(taskQueue),
      exited.then(() => Promise.reject(new Error(`the Python worker exited early:\n${output}`))),
    ]);
  } finally {
    child.kill('SIGTERM');
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 10_000))]);
    child.kill('SIGKILL');
  }
}

describe('issue 24: Python workers (temporalio + keybrake.temporal) on the real Temporal dev server', () => {
  it('a Python fan-out of 40 charges under a $60 cap: cap hits are non-retryable KeybrakeCapExhausted on attempt 1; the key is revoked; no vault key in history', async () => {
    const proxy = await stripeProxy();
    const workflowId = `py-billing-${randomUUID()}`;
    const summary = await runOnPythonWorker(proxy, {}, (taskQueue) =>
      env.client.workflow.execute<(input: unknown) => Promise<PythonBillingSummary>>('pyBillingWorkflow', {
        taskQueue,
        workflowId,
        args: [{ capUsd: 60, customers: customers(40) }],
      }),
    );
    expect(summary.charged + summary.capped).toBe(40);
    expect(summary.failed).toBe(0);
    expect(summary.capped).toBeGreaterThan(0);
    expect(summary.chargedCents).toBeLessThanOrEqual(6_000);

    const { history, attempts } = await expectCapStoppedFanOut(proxy, workflowId, summary);
    // Never retried: every activity (issue, charges, revoke) started once.
    expect(attempts.every((attempt) => attempt === 1)).toBe(true);
    expect(attempts).toHaveLength(40 + 2);
    const text = historyText(history);
    expect(text).toContain(summary.keyId);
    for (const vaultKey of proxy.issuedVaultKeys()) expect(text).not.toContain(vaultKey);
    // The Python activities' idempotency keys are the TypeScript ones: workflow id + activity id + parts.
    const { calls } = (await proxy.admin('GET', `/vault/keys/${summary.keyId}/calls`)).body;
    const forwarded = calls.filter((c: { outcome: string }) => c.outcome === 'forwarded');
    expect(forwarded).toHaveLength(summary.charged);
    const activityIds = (history.events ?? [])
      .map((event) => event.activityTaskScheduledEventAttributes)
      .filter((scheduled) => scheduled?.activityType?.name === 'pyChargeCustomer')
      .map((scheduled) => String(scheduled!.activityId));
    const customerOf = (id: string): string => `cus_${activityIds.indexOf(id)}`;
    const expectedKeys = new Set(
      activityIds.map((id) => deriveIdempotencyKey([workflowId, id, 'charge', customerOf(id)])),
    );
    expect(forwarded.every((c: { idempotency_key: string }) => expectedKeys.has(c.idempotency_key))).toBe(true);
    console.log(
      `[figures] Python Temporal fan-out: 40 charge activities under $60: ${summary.charged} charged ($${(summary.chargedCents / 100).toFixed(2)}), ` +
        `${summary.capped} KeybrakeCapExhausted (non-retryable, attempt 1), key revoked`,
    );
  });

  it('a cancelled Python workflow still revokes its key (with_vault_key revokes in its finally)', async () => {
    const proxy = await stripeProxy();
    const workflowId = `py-cancelled-${randomUUID()}`;
    const error = await runOnPythonWorker(proxy, {}, async (taskQueue) => {
      const handle = await env.client.workflow.start('pyAwaitingApprovalWorkflow', {
        taskQueue,
        workflowId,
        args: [{ capUsd: 50, customers: customers(1) }],
      });
      // Wait until the charge is done and the workflow sleeps on its timer, then cancel it.
      return cancelOnceSleeping(handle, 600);
    });
    expect(error).toBeInstanceOf(WorkflowFailedError);
    expect((error as WorkflowFailedError).cause?.name).toBe('CancelledFailure');
    const key = await keyNamedInHistory(proxy, workflowId);
    expect(key.status).toBe('revoked');
    expect(key.spent_usd).toBeGreaterThan(0);
  });

  it('a Python activity whose response was dropped is retried by Temporal and replayed by the proxy: one charge upstream', async () => {
    const proxy = await stripeProxy();
    const relay = await startDroppingRelay(proxy.url, 1);
    const workflowId = `py-flaky-${randomUUID()}`;
    const summary = await runOnPythonWorker(proxy, { proxyUrl: relay.url }, (taskQueue) =>
      env.client.workflow.execute<(input: unknown) => Promise<PythonBillingSummary>>('pyBillingWorkflow', {
        taskQueue,
        workflowId,
        args: [{ capUsd: 50, customers: [{ customerId: 'cus_flaky', amountCents: 1234 }] }],
      }),
    );
    expect(summary).toMatchObject({ charged: 1, capped: 0, failed: 0, chargedCents: 1234 });
    expect(relay.dropped()).toBe(1);
    const { calls } = (await proxy.admin('GET', `/vault/keys/${summary.keyId}/calls`)).body;
    expect(calls.map((c: { outcome: string }) => c.outcome)).toEqual(['forwarded', 'replayed']);
    expect(calls[1].idempotency_key).toBe(calls[0].idempotency_key);
    expect((await proxy.admin('GET', `/vault/keys/${summary.keyId}`)).body.spent_usd).toBe(12.34);
    const { attempts } = activityOutcomes(await env.client.workflow.getHandle(workflowId).fetchHistory());
    // History records each activity's last attempt: issue 1, the charge 2 (the first was dropped), revoke 1.
    expect(attempts).toEqual([1, 2, 1]);
  });
});
