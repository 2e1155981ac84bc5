import { randomUUID } from 'node:crypto';
import Stripe from 'stripe';
import { NonRetryableException, type Task } from '@io-orkes/conductor-javascript';
import { stripeOptions } from '@keybrake/client/stripe';
import { describe, expect, it } from 'vitest';
import { stripeMockProxy, type TestProxy } from '../../../core-proxy/test/helpers.js';
import { keybrakeWorker, VAULT_KEY_REDACTED, type KeybrakeTaskContext } from '../src/index.js';

// The wrapper is exercised as the SDK's TaskRunner calls it (execute(task)), against the real
// proxy and stripe-mock; the e2e runs it on a real Conductor server.

async function stripeKey(proxy: TestProxy, usdCap: number) {
  return proxy.issueKey({
    vendor: 'stripe',
    usd_cap: usdCap,
    allowed_endpoints: ['POST /v1/payment_intents'],
    expires_in: '1h',
  });
}

function task(vaultKey: string | undefined, overrides: Partial<Task> = {}): Task {
  return {
    taskId: randomUUID(),
    workflowInstanceId: 'wf-1',
    referenceTaskName: '_charge_customer_7',
    taskDefName: 'charge_customer',
    retryCount: 0,
    inputData: { customerId: 'cus_7', amountCents: 500, ...(vaultKey === undefined ? {} : { vaultKey }) },
    ...overrides,
  } as Task;
}

async function charge(input: Task['inputData'], keybrake: KeybrakeTaskContext) {
  const stripe = new Stripe(keybrake.vaultKey, stripeOptions(keybrake.proxyUrl, { maxNetworkRetries: 0 }));
  const intent = await stripe.paymentIntents.create(
    { amount: Number(input?.amountCents), currency: 'usd' },
    { idempotencyKey: keybrake.idempotencyKey('charge') },
  );
  return { paymentIntentId: intent.id };
}

describe('keybrakeWorker (real proxy, stripe-mock)', () => {
  const setup = () => stripeMockProxy();

  it('issue 26: a limit refusal hands the task back IN_PROGRESS to run again after its Retry-After; a cap hit stays terminal', async () => {
    // A frozen clock: both calls fall in one second of the proxy's, however slow the machine.
    const proxy = await stripeMockProxy({ startAt: Date.now(), frozenClock: true });
    const key = await proxy.issueKey({
      vendor: 'stripe',
      usd_cap: 1,
      allowed_endpoints: ['POST /v1/payment_intents'],
      expires_in: '1h',
      max_concurrent: 1,
      max_requests_per_second: 1,
    });
    const worker = keybrakeWorker(
      {
        taskDefName: 'charge_customer',
        execute: async (t, keybrake) => ({ status: 'COMPLETED', outputData: await charge(t.inputData, keybrake) }),
      },
      { proxyUrl: proxy.url },
    );
    const results = await Promise.all(
      // Two fork branches (their own idempotency keys) at once.
      [1, 2].map((branch) =>
        worker.execute(
          task(key.vault_key, {
            referenceTaskName: `_charge_${branch}`,
            inputData: { amountCents: 10, vaultKey: key.vault_key },
          }),
        ),
      ),
    );
    const retry = results.find((result) => (result as { status?: string }).status === 'IN_PROGRESS') as Record<
      string,
      any
    >;
    expect(retry).toBeDefined();
    expect(retry.callbackAfterSeconds).toBe(1);
    expect(['rate_limited', 'concurrency_limited']).toContain(retry.outputData.error.code);
    expect(JSON.stringify(retry)).not.toContain(key.vault_key);
    const capped = await worker.execute(
      task(key.vault_key, { referenceTaskName: '_charge_3', inputData: { amountCents: 500, vaultKey: key.vault_key } }),
    );
    expect(capped).toMatchObject({
      status: 'FAILED_WITH_TERMINAL_ERROR',
      outputData: { error: { code: 'cap_exhausted' } },
    });
  });

  it('gives execute the vault key, and the task input without it', async () => {
    const proxy = await setup();
    const { vault_key: vaultKey } = await stripeKey(proxy, 100);
    let seen: { input: unknown; vaultKey: string; proxyUrl: string } | undefined;
    const worker = keybrakeWorker(
      {
        taskDefName: 'charge_customer',
        execute: async (t, keybrake) => {
          seen = { input: t.inputData, vaultKey: keybrake.vaultKey, proxyUrl: keybrake.proxyUrl };
          return { status: 'COMPLETED', outputData: await charge(t.inputData, keybrake) };
        },
      },
      { proxyUrl: proxy.url },
    );
    const result = await worker.execute(task(vaultKey));
    expect(result.status).toBe('COMPLETED');
    expect(seen).toEqual({ input: { customerId: 'cus_7', amountCents: 500 }, vaultKey, proxyUrl: proxy.url });
    expect(worker.taskDefName).toBe('charge_customer');
  });

  it('derives idempotency keys from workflow instance and reference name: a retry is replayed, another branch is not', async () => {
    const proxy = await setup();
    const { key_id: keyId, vault_key: vaultKey } = await stripeKey(proxy, 100);
    const keys: string[] = [];
    const worker = keybrakeWorker(
      {
        taskDefName: 'charge_customer',
        execute: async (t, keybrake) => {
          keys.push(keybrake.idempotencyKey('charge'));
          return { status: 'COMPLETED', outputData: await charge(t.inputData, keybrake) };
        },
      },
      { proxyUrl: proxy.url },
    );
    const first = await worker.execute(task(vaultKey));
    // Conductor's retry: a new task id and retry count, same workflow and reference name.
    const retry = await worker.execute(task(vaultKey, { retryCount: 1, taskId: randomUUID() }));
    const otherBranch = await worker.execute(task(vaultKey, { referenceTaskName: '_charge_customer_8' }));
    const otherRun = await worker.execute(task(vaultKey, { workflowInstanceId: 'wf-2' }));
    expect(keys[0]).toBe(keys[1]);
    expect(new Set(keys).size).toBe(3);
    expect(retry.outputData).toEqual(first.outputData);
    expect(otherBranch.outputData).not.toEqual(first.outputData);
    expect(otherRun.outputData).not.toEqual(first.outputData);
    const calls = (await proxy.admin('GET', `/vault/keys/${keyId}/calls`)).body.calls as { outcome: string }[];
    expect(calls.map((call) => call.outcome)).toEqual(['forwarded', 'replayed', 'forwarded', 'forwarded']);
  });

  it('ends a cap hit FAILED_WITH_TERMINAL_ERROR with code cap_exhausted', async () => {
    const proxy = await setup();
    const { vault_key: vaultKey } = await stripeKey(proxy, 4);
    const worker = keybrakeWorker(
      {
        taskDefName: 'charge_customer',
        execute: async (t, keybrake) => ({ status: 'COMPLETED', outputData: await charge(t.inputData, keybrake) }),
      },
      { proxyUrl: proxy.url },
    );
    const result = await worker.execute(task(vaultKey));
    expect(result).toMatchObject({
      status: 'FAILED_WITH_TERMINAL_ERROR',
      reasonForIncompletion: expect.stringMatching(/^Keybrake cap exhausted/),
      outputData: { error: { code: 'cap_exhausted' } },
    });
  });

  it('leaves other failures retryable (thrown, so the SDK reports FAILED) and keeps the SDK NonRetryableException terminal', async () => {
    const proxy = await setup();
    const { vault_key: vaultKey } = await stripeKey(proxy, 100);
    const worker = (execute: () => Promise<never>) =>
      keybrakeWorker({ taskDefName: 'charge_customer', execute }, { proxyUrl: proxy.url });

    // A vendor 400 (stripe-mock refuses a negative amount) and an allowlist refusal.
    const vendorError = await worker(async () => {
      const stripe = new Stripe(vaultKey, stripeOptions(proxy.url, { maxNetworkRetries: 0 }));
      return (await stripe.paymentIntents.create({ amount: -1, currency: 'usd' })) as never;
    })
      .execute(task(vaultKey))
      .catch((error: unknown) => error);
    expect(vendorError).toBeInstanceOf(Error);
    expect(vendorError).not.toBeInstanceOf(NonRetryableException);

    const terminal = await worker(async () => {
      throw new NonRetryableException('customer closed the account');
    }).execute(task(vaultKey));
    expect(terminal).toMatchObject({
      status: 'FAILED_WITH_TERMINAL_ERROR',
      reasonForIncompletion: 'customer closed the account',
      outputData: { error: { code: 'non_retryable' } },
    });
  });

  it('keeps the vault key out of output, failure reasons and stacks', async () => {
    const proxy = await setup();
    const { vault_key: vaultKey } = await stripeKey(proxy, 100);
    const echoing = keybrakeWorker(
      {
        taskDefName: 'charge_customer',
        execute: async (_t, keybrake) => ({
          status: 'COMPLETED',
          outputData: { echoed: { header: `Bearer ${keybrake.vaultKey}` }, list: [keybrake.vaultKey] },
        }),
      },
      { proxyUrl: proxy.url },
    );
    const result = await echoing.execute(task(vaultKey));
    expect(JSON.stringify(result)).not.toContain(vaultKey);
    expect(result.outputData).toEqual({
      echoed: { header: `Bearer ${VAULT_KEY_REDACTED}` },
      list: [VAULT_KEY_REDACTED],
    });

    const throwing = keybrakeWorker(
      {
        taskDefName: 'charge_customer',
        execute: async (_t, keybrake) => {
          throw new TypeError(`could not use ${keybrake.vaultKey}`);
        },
      },
      { proxyUrl: proxy.url },
    );
    const error = (await throwing.execute(task(vaultKey)).catch((e: unknown) => e)) as Error;
    expect(error.name).toBe('TypeError');
    expect(error.message).toBe(`could not use ${VAULT_KEY_REDACTED}`);
    expect(error.stack).not.toContain(vaultKey);
    // Nothing but name, message and stack: no raw vendor bodies or headers ride along.
    expect(Object.keys(error).filter((key) => key !== 'name')).toEqual([]);
  });

  it('ends a task without a vault key FAILED_WITH_TERMINAL_ERROR (missing_vault_key), and needs a proxy URL', async () => {
    const worker = keybrakeWorker(
      { taskDefName: 'charge_customer', execute: async () => ({ status: 'COMPLETED' }) },
      { proxyUrl: 'http://127.0.0.1:1' },
    );
    expect(await worker.execute(task(undefined))).toMatchObject({
      status: 'FAILED_WITH_TERMINAL_ERROR',
      outputData: { error: { code: 'missing_vault_key' } },
    });
    const previous = process.env.KEYBRAKE_PROXY_URL;
    delete process.env.KEYBRAKE_PROXY_URL;
    try {
      expect(() =>
        keybrakeWorker({ taskDefName: 'charge_customer', execute: async () => ({ status: 'COMPLETED' }) }),
      ).toThrow(/KEYBRAKE_PROXY_URL/);
    } finally {
      if (previous !== undefined) process.env.KEYBRAKE_PROXY_URL = previous;
    }
  });
});
