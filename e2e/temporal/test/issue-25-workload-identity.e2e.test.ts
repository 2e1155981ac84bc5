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
import { fromTokenFile } from '@keybrake/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stripeMockProxy } from '../../../core-proxy/test/helpers.js';
import { type HydraServer, startHydra } from '../../../core-proxy/test/hydra-server.js';
import { issuersFile, projectedTokenVolume } from '../../../core-proxy/test/workload-tokens.js';
import * as activities from '../src/activities.js';
import type { BillingInput, BillingSummary } from '../src/workflows.js';

const WORKFLOWS = fileURLToPath(new URL('../src/workflows.ts', import.meta.url));
const SEAL_SECRET = `seal-${randomUUID()}`;

let env: TestWorkflowEnvironment;
let hydra: HydraServer;

beforeAll(async () => {
  const path = process.env.TEMPORAL_CLI_BIN;
  if (!path) throw new Error('TEMPORAL_CLI_BIN is not set: run `pnpm e2e:temporal` (it installs the Temporal CLI).');
  [env, hydra] = await Promise.all([
    TestWorkflowEnvironment.createLocal({ server: { executable: { type: 'existing-path', path } } }),
    startHydra(),
  ]);
}, 120_000);

afterAll(async () => {
  await Promise.all([env?.teardown(), hydra?.stop()]);
});

describe('issue 25: a Temporal worker issues keys with a Hydra token read from a file (real Temporal dev server, ORY Hydra, stripe-mock)', () => {
  it('the worker holds no issuer key: its token (client credentials) issues a key bounded by the policy, with its identity; after the file is rotated to a token no policy matches, the next workflow is refused and issues nothing', async () => {
    const policy = {
      name: 'temporal-billing',
      match: { iss: hydra.issuer, sub: 'billing-worker-*' },
      grant: {
        vendors: ['stripe'],
        max_usd_cap: 50,
        max_ttl: '2h',
        allowed_endpoints: ['POST /v1/payment_intents'],
        label_prefix: 'temporal/',
      },
    };
    const proxy = await stripeMockProxy({
      store: 'embedded',
      env: {
        KEYBRAKE_ISSUERS_FILE: issuersFile({
          issuers: [{ issuer: hydra.issuer, audiences: ['keybrake'], algorithms: ['RS256', 'ES256'] }],
          policies: [policy],
        }),
      },
    });
    const billing = await hydra.createClient({ clientId: `billing-worker-${randomUUID()}` });
    const other = await hydra.createClient({ clientId: `payroll-worker-${randomUUID()}` });
    const volume = projectedTokenVolume(await hydra.token(billing));
    try {
      const taskQueue = `keybrake-identity-${randomUUID()}`;
      const worker = await Worker.create({
        connection: env.nativeConnection,
        taskQueue,
        workflowsPath: WORKFLOWS,
        activities: {
          // No apiKey anywhere in the worker: only the token file.
          ...createKeybrakeActivities({
            baseUrl: proxy.url,
            tokenProvider: fromTokenFile(volume.path),
            sealSecret: SEAL_SECRET,
          }),
          ...activities,
        },
        interceptors: {
          activity: keybrakeActivityInterceptors({ proxyUrl: proxy.url, sealSecret: SEAL_SECRET }),
          workflowModules: [keybrakeWorkflowInterceptorsPath],
        },
      });
      const customers = Array.from({ length: 4 }, (_, i) => ({ customerId: `cus_${i}`, amountCents: 300 }));
      await worker.runUntil(async () => {
        const workflowId = `billing-${randomUUID()}`;
        const summary = await env.client.workflow.execute<(input: BillingInput) => Promise<BillingSummary>>(
          'billingWorkflow',
          { taskQueue, workflowId, args: [{ capUsd: 10, customers }] },
        );
        // $12 of charges under a $10 cap: three charged, one cap hit.
        expect(summary).toMatchObject({ charged: 3, capped: 1, failed: 0, chargedCents: 900 });
        const key = (await proxy.admin('GET', `/vault/keys/${summary.keyId}`)).body;
        expect(key).toMatchObject({
          status: 'revoked',
          usd_cap: 10,
          agent_run_label: `temporal/${workflowId}`,
          identity: { issuer: hydra.issuer, subject: billing.clientId, policy: 'temporal-billing' },
        });

        // The file now holds a token of a client no policy matches: the worker reads it on the next
        // request, and the proxy refuses to issue.
        volume.rotate(await hydra.token(other));
        const refused = await env.client.workflow
          .execute<(input: BillingInput) => Promise<BillingSummary>>('billingWorkflow', {
            taskQueue,
            workflowId: `billing-${randomUUID()}`,
            args: [{ capUsd: 10, customers }],
          })
          .catch((error: unknown) => error);
        expect(refused).toBeInstanceOf(WorkflowFailedError);
        // The issue activity failed for good (a retry cannot change the policy), typed by the code.
        const types: unknown[] = [];
        for (let cause: any = (refused as WorkflowFailedError).cause; cause; cause = cause.cause)
          types.push(cause.type);
        expect(types).toContain('KeybrakePolicyNoMatch');
      });
      // One key in all: the first workflow's.
      expect((await proxy.admin('GET', '/vault/keys')).body.keys).toHaveLength(1);
      console.log(
        '[figures] issue 25 Temporal worker with a Hydra token file: 1 key issued (3 charged, 1 cap hit), identity recorded; after rotation to an unmatched token: policy_no_match (non-retryable), no second key',
      );
    } finally {
      volume.remove();
    }
  });
});
