import { randomUUID } from 'node:crypto';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deriveIdempotencyKey } from '@keybrake/client';
import { describe, expect, it } from 'vitest';
import { stripeMockProxy, type TestProxy } from '../../../core-proxy/test/helpers.js';
import { issuersFile, jwksFile, newSigningKey, signToken } from '../../../core-proxy/test/workload-tokens.js';
import {
  committedTemplate,
  newWorkflow,
  runScriptStep,
  startFakeKubernetes,
  type FakeKubernetes,
  type WorkflowContext,
} from './argo-step.js';

// Script-level tests, not workflow-level: each script of the committed templates runs for real
// (python3, and keybrake exec) against the real proxy and stripe-mock, with the test filling in the
// parameter values Argo would. Argo itself, its executor and the Kubernetes API do not run here:
// the Kubernetes API is a FAKE of our own (see argo-step.ts). The workflow-level run is e2e/argo-kind.

const WORKFLOW_TEMPLATE = 'keybrake-workflowtemplate.yaml';
const ROOT = join(import.meta.dirname, '..', '..', '..');

interface Setup {
  proxy: TestProxy;
  kubernetes: FakeKubernetes;
  workflow: WorkflowContext;
  secretRefs: Record<string, string>;
  /** Issue 25: what the kubelet projects for audience `keybrake` (the admin steps' default auth). */
  serviceAccountTokens: Record<string, string>;
}

async function setup(): Promise<Setup> {
  const proxy = await stripeMockProxy();
  const kubernetes = await startFakeKubernetes();
  const workflow = newWorkflow();
  // The bearer is opaque to the scripts: the proxy's issuer key stands in for the projected token
  // here (the proxy accepts it); the workload-identity tests below tell the two routes apart.
  return {
    proxy,
    kubernetes,
    workflow,
    secretRefs: { 'keybrake-issuer/api-key': proxy.apiKey },
    serviceAccountTokens: { keybrake: proxy.apiKey },
  };
}

function issue(s: Setup, args: Record<string, string>, template = 'issue-vault-key') {
  return runScriptStep(committedTemplate(WORKFLOW_TEMPLATE, template), {
    workflow: s.workflow,
    args: { 'proxy-url': s.proxy.url, 'expires-in': '1h', ...args },
    kubernetes: s.kubernetes,
    secretRefs: s.secretRefs,
    serviceAccountTokens: s.serviceAccountTokens,
  });
}

/** A vendor step of an example (charge-customer, act-on-inbound-email), as a retry would run it too. */
function vendorStep(s: Setup, file: string, template: string, args: Record<string, string>, stepName: string) {
  return runScriptStep(committedTemplate(file, template), {
    workflow: {
      ...s.workflow,
      variables: { 'workflow.parameters.proxy-url': s.proxy.url, 'steps.name': stepName },
    },
    args,
    kubernetes: s.kubernetes,
    secretRefs: s.secretRefs,
    serviceAccountTokens: s.serviceAccountTokens,
  });
}

function revoke(s: Setup, keyId: string, status: string) {
  return runScriptStep(committedTemplate(WORKFLOW_TEMPLATE, 'revoke-vault-key'), {
    workflow: s.workflow,
    args: { 'key-id': keyId, 'workflow-status': status, 'proxy-url': s.proxy.url },
    kubernetes: s.kubernetes,
    secretRefs: s.secretRefs,
    serviceAccountTokens: s.serviceAccountTokens,
  });
}

const STRIPE = { vendor: 'stripe', 'allowed-endpoints': '["POST /v1/payment_intents"]' };
const BILLING = 'examples/billing-agent.yaml';
const SUPPORT = 'examples/support-agent.yaml';

function expectNoSecretIn(s: Setup, ...texts: string[]): void {
  for (const text of texts) {
    for (const vaultKey of s.proxy.issuedVaultKeys()) expect(text).not.toContain(vaultKey);
    expect(text).not.toContain(s.proxy.apiKey);
  }
}

describe('script-level (python3 and keybrake exec against the real proxy and stripe-mock; Argo and Kubernetes not running)', () => {
  it('script-level: issue-vault-key issues a key, keeps it only in a Secret owned by the Workflow, outputs its id', async () => {
    const s = await setup();
    const run = await issue(s, { ...STRIPE, 'usd-cap': '30' });
    expect(run.exitCode, run.stderr).toBe(0);
    const keyId = run.outputs['key-id']!;
    expect(keyId).toMatch(/\S/);
    expect(run.outputs['vault-key-secret']).toBe(`keybrake-${s.workflow.uid}`);
    expect(Object.keys(run.outputs).sort()).toEqual(['expires-at', 'key-id', 'vault-key-secret']);
    const secret = s.kubernetes.secrets.get(`${s.workflow.namespace}/keybrake-${s.workflow.uid}`)!;
    expect(secret.metadata.ownerReferences).toEqual([
      {
        apiVersion: 'argoproj.io/v1alpha1',
        kind: 'Workflow',
        name: s.workflow.name,
        uid: s.workflow.uid,
        blockOwnerDeletion: false,
      },
    ]);
    const vaultKey = s.kubernetes.secretValue(s.workflow.namespace, `keybrake-${s.workflow.uid}`, 'vault-key');
    expect(s.proxy.issuedVaultKeys()).toEqual([vaultKey]);
    const state = await s.proxy.admin('GET', `/vault/keys/${keyId}`);
    expect(state.body).toMatchObject({ status: 'active', agent_run_label: `argo/${s.workflow.name}`, usd_cap: 30 });
    // Neither the vault key nor the issuer key in what Argo keeps: logs and outputs.
    expectNoSecretIn(s, run.stdout, run.stderr, JSON.stringify(run.outputs));
    expect(run.stdout).toContain(`issued ${keyId}`);
  });

  it('script-level: a cap hit in the billing-agent charge step exits 75; a retry of a charge that went through is replayed, not charged again', async () => {
    const s = await setup();
    const issued = await issue(s, { ...STRIPE, 'usd-cap': '50' });
    expect(issued.exitCode, issued.stderr).toBe(0);
    const secret = issued.outputs['vault-key-secret']!;
    const charge = (customer: string) =>
      vendorStep(
        s,
        BILLING,
        'charge-customer',
        { customer, 'amount-cents': '2500', 'vault-key-secret': secret },
        `charge(0:${customer})`,
      );
    const first = await charge('cus_001');
    const second = await charge('cus_002');
    const third = await charge('cus_003');
    expect([first.exitCode, second.exitCode, third.exitCode], first.stderr + second.stderr + third.stderr).toEqual([
      0, 0, 75,
    ]);
    expect(third.stderr).toContain('cap_exhausted');
    // Argo retries cus_001's step with the same env: the same idempotency key, replayed by the proxy.
    const retry = await charge('cus_001');
    expect(retry.exitCode, retry.stderr).toBe(0);
    expect(retry.stdout).toContain('(replayed)');
    const calls = (await s.proxy.admin('GET', `/vault/keys/${issued.outputs['key-id']}/calls`)).body.calls as any[];
    expect(calls.map((call) => call.outcome)).toEqual(['forwarded', 'forwarded', 'blocked', 'replayed']);
    expect(calls[2].reason).toBe('cap_exhausted');
    expect(calls[0].idempotency_key).toBe(`${s.workflow.uid}/charge(0:cus_001)/cus_001`);
    expect(calls[3].idempotency_key).toBe(calls[0].idempotency_key);
    const state = await s.proxy.admin('GET', `/vault/keys/${issued.outputs['key-id']}`);
    expect(state.body.spent_usd).toBe(50);
    expectNoSecretIn(s, first.stdout, first.stderr, third.stdout, third.stderr);
  });

  it('script-level: support-agent: the untrusted step holds a tainted child and its charge is refused (exit 76); the sibling charges', async () => {
    const s = await setup();
    const parent = await issue(s, { ...STRIPE, 'usd-cap': '100' });
    expect(parent.exitCode, parent.stderr).toBe(0);
    const child = await issue(
      s,
      { ...STRIPE, 'usd-cap': '100', 'parent-key-id': parent.outputs['key-id']! },
      'issue-tainted-vault-key',
    );
    expect(child.exitCode, child.stderr).toBe(0);
    expect(child.outputs['vault-key-secret']).toBe(`keybrake-${s.workflow.uid}-tainted`);
    const childState = await s.proxy.admin('GET', `/vault/keys/${child.outputs['key-id']}`);
    expect(childState.body).toMatchObject({
      tainted: true,
      parent_key_id: parent.outputs['key-id'],
      agent_run_label: `argo/${s.workflow.name}/tainted`,
    });
    const untrusted = await vendorStep(
      s,
      SUPPORT,
      'act-on-inbound-email',
      { customer: 'cus_support_001', 'amount-cents': '50000', 'vault-key-secret': child.outputs['vault-key-secret']! },
      'act-on-inbound-email',
    );
    expect(untrusted.exitCode, untrusted.stderr).toBe(76);
    expect(untrusted.stderr).toContain('tainted_request_refused');
    const sibling = await vendorStep(
      s,
      SUPPORT,
      'charge-customer',
      { customer: 'cus_support_001', 'amount-cents': '1500', 'vault-key-secret': parent.outputs['vault-key-secret']! },
      'charge',
    );
    expect(sibling.exitCode, sibling.stderr).toBe(0);
    const calls = (await s.proxy.admin('GET', `/vault/keys/${child.outputs['key-id']}/calls`)).body.calls as any[];
    expect(calls).toHaveLength(1);
    expect(calls[0]).toMatchObject({ outcome: 'blocked', reason: 'tainted_request_refused', tainted: true });
  });

  it('script-level: revoke-vault-key revokes the key and its tainted child, reports spend and workflow status, deletes the Secrets; a later charge exits 79', async () => {
    const s = await setup();
    const parent = await issue(s, { ...STRIPE, 'usd-cap': '100' });
    const child = await issue(
      s,
      { ...STRIPE, 'usd-cap': '100', 'parent-key-id': parent.outputs['key-id']! },
      'issue-tainted-vault-key',
    );
    expect([parent.exitCode, child.exitCode]).toEqual([0, 0]);
    const charged = await vendorStep(
      s,
      BILLING,
      'charge-customer',
      { customer: 'cus_007', 'amount-cents': '1500', 'vault-key-secret': parent.outputs['vault-key-secret']! },
      'charge(0:cus_007)',
    );
    expect(charged.exitCode, charged.stderr).toBe(0);
    const vaultKey = s.kubernetes.secretValue(s.workflow.namespace, parent.outputs['vault-key-secret']!, 'vault-key');
    expect(s.kubernetes.secrets.size).toBe(2);

    const run = await revoke(s, parent.outputs['key-id']!, 'Failed');
    expect(run.exitCode, run.stderr).toBe(0);
    expect(run.outputs['spent-usd']).toBe('15');
    expect(run.stdout).toContain(`workflow Failed: key ${parent.outputs['key-id']} revoked; spent $15`);
    expect(s.kubernetes.secrets.size).toBe(0);
    for (const keyId of [parent.outputs['key-id'], child.outputs['key-id']]) {
      expect((await s.proxy.admin('GET', `/vault/keys/${keyId}`)).body.status).toBe('revoked');
    }
    expectNoSecretIn(s, run.stdout, run.stderr);

    // A straggler still holding the key (its Secret is gone, so the test hands it the value).
    s.secretRefs[`${parent.outputs['vault-key-secret']}/vault-key`] = vaultKey;
    const late = await vendorStep(
      s,
      BILLING,
      'charge-customer',
      { customer: 'cus_008', 'amount-cents': '1500', 'vault-key-secret': parent.outputs['vault-key-secret']! },
      'charge(1:cus_008)',
    );
    expect(late.exitCode, late.stderr).toBe(79);
    expect(late.stderr).toContain('vault_key_revoked');

    // Revoking again (an exit-handler retry) is harmless.
    const again = await revoke(s, parent.outputs['key-id']!, 'Failed');
    expect(again.exitCode, again.stderr).toBe(0);
  });

  it('script-level: revoke-vault-key with no key (the issue step never succeeded) does nothing and succeeds', async () => {
    const s = await setup();
    const run = await revoke(s, '', 'Error');
    expect(run.exitCode, run.stderr).toBe(0);
    expect(run.stdout).toContain('no vault key was issued');
    expect(s.kubernetes.requests).toEqual([]);
  });

  it('script-level: when the Secret cannot be written (no RBAC: 403) the issue step revokes the key it issued and fails', async () => {
    const s = await setup();
    s.kubernetes.refuseCreates(403);
    const run = await issue(s, { ...STRIPE, 'usd-cap': '30' });
    expect(run.exitCode).toBe(1);
    expect(run.outputs).toEqual({});
    const match = /key (\S+) revoked/.exec(run.stderr);
    expect(match, run.stderr).not.toBeNull();
    expect((await s.proxy.admin('GET', `/vault/keys/${match![1]}`)).body.status).toBe('revoked');
    expectNoSecretIn(s, run.stdout, run.stderr);
  });

  it('script-level: a retried issue step replaces the Secret of the earlier attempt (409 on create)', async () => {
    const s = await setup();
    const first = await issue(s, { ...STRIPE, 'usd-cap': '30' });
    const second = await issue(s, { ...STRIPE, 'usd-cap': '30' });
    expect([first.exitCode, second.exitCode], second.stderr).toEqual([0, 0]);
    expect(second.outputs['key-id']).not.toBe(first.outputs['key-id']);
    const held = s.kubernetes.secretValue(s.workflow.namespace, `keybrake-${s.workflow.uid}`, 'key-id');
    expect(held).toBe(second.outputs['key-id']);
  });

  it('script-level: the proxy refusing to issue (bad caps) fails the issue step with its code and no Secret', async () => {
    const s = await setup();
    const run = await issue(s, { ...STRIPE });
    expect(run.exitCode).toBe(1);
    expect(run.stderr).toContain('invalid_request');
    expect(s.kubernetes.secrets.size).toBe(0);
  });
});

describe('issue 25: script-level, the admin steps authenticate with the projected service-account token by default', () => {
  it('script-level: by default issue and revoke send the projected token (audience keybrake), not the issuer Secret', async () => {
    const s = await setup();
    // The issuer Secret holds a key the proxy refuses: only the projected token can succeed.
    s.secretRefs = { 'keybrake-issuer/api-key': 'kb_admin_not-trusted' };
    const issued = await issue(s, { ...STRIPE, 'usd-cap': '30' });
    expect(issued.exitCode, issued.stderr).toBe(0);
    const revoked = await revoke(s, issued.outputs['key-id']!, 'Succeeded');
    expect(revoked.exitCode, revoked.stderr).toBe(0);
    expect((await s.proxy.admin('GET', `/vault/keys/${issued.outputs['key-id']!}`)).body.status).toBe('revoked');
  });

  it('script-level: a projected token in the Kubernetes shape of claims (static JWKS: no API server runs here) issues a key bounded by its policy, with its identity', async () => {
    const issuer = 'https://kubernetes.default.svc.cluster.local';
    const key = newSigningKey();
    const proxy = await stripeMockProxy({
      env: {
        KEYBRAKE_ISSUERS_FILE: issuersFile({
          issuers: [{ issuer, jwks_file: jwksFile([key]).path, audiences: ['keybrake'], algorithms: ['RS256'] }],
          policies: [
            {
              name: 'argo-billing',
              match: {
                iss: issuer,
                'kubernetes.io.namespace': 'argo',
                'kubernetes.io.serviceaccount.name': 'keybrake-workflow',
              },
              grant: { vendors: ['stripe'], max_usd_cap: 50, label_prefix: 'argo/' },
            },
          ],
        }),
      },
    });
    const now = Math.floor(Date.now() / 1000);
    const token = signToken(key, {
      iss: issuer,
      aud: ['keybrake'],
      sub: 'system:serviceaccount:argo:keybrake-workflow',
      iat: now,
      nbf: now,
      exp: now + 600,
      'kubernetes.io': { namespace: 'argo', serviceaccount: { name: 'keybrake-workflow', uid: randomUUID() } },
    });
    const s: Setup = {
      proxy,
      kubernetes: await startFakeKubernetes(),
      workflow: newWorkflow('argo'),
      secretRefs: {},
      serviceAccountTokens: { keybrake: token },
    };
    const over = await issue(s, { ...STRIPE, 'usd-cap': '80' });
    expect(over.exitCode).toBe(1);
    expect(over.stderr).toContain('policy_cap');
    const issued = await issue(s, { ...STRIPE, 'usd-cap': '30' });
    expect(issued.exitCode, issued.stderr).toBe(0);
    const state = (await proxy.admin('GET', `/vault/keys/${issued.outputs['key-id']!}`)).body;
    expect(state.identity).toEqual({
      issuer,
      subject: 'system:serviceaccount:argo:keybrake-workflow',
      policy: 'argo-billing',
    });
    const revoked = await revoke(s, issued.outputs['key-id']!, 'Succeeded');
    expect(revoked.exitCode, revoked.stderr).toBe(0);
    expect(proxy.issuedVaultKeys()).toHaveLength(1);
    for (const text of [over.stderr, issued.stdout, issued.stderr, revoked.stdout, revoked.stderr]) {
      expect(text).not.toContain(token);
    }
  });

  it('script-level: auth=issuer-key uses the keybrake-issuer Secret and ignores the projected token', async () => {
    const s = await setup();
    s.serviceAccountTokens = { keybrake: 'not-a-token-the-proxy-trusts' };
    const issued = await issue(s, { ...STRIPE, 'usd-cap': '30', auth: 'issuer-key' });
    expect(issued.exitCode, issued.stderr).toBe(0);
    const revoked = await runScriptStep(committedTemplate(WORKFLOW_TEMPLATE, 'revoke-vault-key'), {
      workflow: s.workflow,
      args: {
        'key-id': issued.outputs['key-id']!,
        'workflow-status': 'Succeeded',
        'proxy-url': s.proxy.url,
        auth: 'issuer-key',
      },
      kubernetes: s.kubernetes,
      secretRefs: s.secretRefs,
      serviceAccountTokens: s.serviceAccountTokens,
    });
    expect(revoked.exitCode, revoked.stderr).toBe(0);
  });

  it('script-level: auth=issuer-key with no keybrake-issuer Secret fails clearly and issues nothing', async () => {
    const s = await setup();
    s.secretRefs = {};
    const run = await issue(s, { ...STRIPE, 'usd-cap': '30', auth: 'issuer-key' });
    expect(run.exitCode).toBe(1);
    expect(run.stderr).toContain('keybrake-issuer Secret');
    expect(s.proxy.issuedVaultKeys()).toEqual([]);
  });

  it('script-level: no projected token (no file), or one the proxy refuses (401), fails the issue step; the token is never printed', async () => {
    const s = await setup();
    s.serviceAccountTokens = {};
    const missing = await issue(s, { ...STRIPE, 'usd-cap': '30' });
    expect(missing.exitCode).toBe(1);
    expect(missing.stderr).toContain('cannot read the projected service-account token');
    const refusedToken = 'eyJhbGciOiJSUzI1NiJ9.refused-token-text.sig';
    s.serviceAccountTokens = { keybrake: refusedToken };
    const refused = await issue(s, { ...STRIPE, 'usd-cap': '30' });
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toContain('unauthorized');
    for (const text of [missing.stdout, missing.stderr, refused.stdout, refused.stderr]) {
      expect(text).not.toContain('refused-token-text');
    }
    expect(s.proxy.issuedVaultKeys()).toEqual([]);
    expect(s.kubernetes.secrets.size).toBe(0);
  });

  it('script-level: an unknown auth value fails before anything is sent', async () => {
    const s = await setup();
    const run = await issue(s, { ...STRIPE, 'usd-cap': '30', auth: 'basic' });
    expect(run.exitCode).toBe(1);
    expect(run.stderr).toContain('auth must be service-account-token or issuer-key');
    expect(s.proxy.issuedVaultKeys()).toEqual([]);
  });
});

/** Runs `keybrake-exec` (the bin of @keybrake/client) around a program. */
function keybrakeExec(
  args: string[],
  env: Record<string, string>,
): Promise<{ exitCode: number; stderr: string; stdout: string }> {
  const bin = join(ROOT, 'integrations/client/dist/exec-bin.js');
  const child = spawn(process.execPath, [bin, ...args], { env: { PATH: process.env.PATH ?? '', ...env } });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve) => child.once('exit', (code) => resolve({ exitCode: code ?? -1, stdout, stderr })));
}

/**
 * A user program that knows nothing of Keybrake's exit codes: one Stripe charge through
 * KEYBRAKE_PROXY_URL, exit 1 on any HTTP error. It prints the idempotency key it was given.
 */
const PLAIN_PROGRAM = String.raw`import os, sys, urllib.error, urllib.parse, urllib.request
print("idempotency-key=" + os.environ.get("KEYBRAKE_IDEMPOTENCY_KEY", ""))
request = urllib.request.Request(os.environ["KEYBRAKE_PROXY_URL"] + "/stripe/v1/payment_intents",
    data=urllib.parse.urlencode({"amount": sys.argv[1], "currency": "usd"}).encode(), method="POST",
    headers={"authorization": "Bearer " + os.environ["KEYBRAKE_VAULT_KEY"],
             "idempotency-key": os.environ.get("KEYBRAKE_IDEMPOTENCY_KEY", "") + sys.argv[1]})
try:
    urllib.request.urlopen(request, timeout=30).read()
except urllib.error.HTTPError as error:
    print("charge failed: HTTP %d" % error.code, file=sys.stderr)
    sys.exit(1)
`;

describe('script-level: keybrake-exec (a program that knows nothing of the convention)', () => {
  it('script-level: keybrake-exec gives the program the vault key, proxy and idempotency key, and maps its cap hit to 75', async () => {
    const proxy = await stripeMockProxy();
    const key = await proxy.issueKey({
      vendor: 'stripe',
      usd_cap: 30,
      allowed_endpoints: ['POST /v1/payment_intents'],
    });
    const dir = mkdtempSync(join(tmpdir(), 'keybrake-exec-'));
    const program = join(dir, 'charge.py');
    writeFileSync(program, PLAIN_PROGRAM);
    try {
      const uid = 'f3a1c2d4-0000-4000-8000-000000000001';
      const parts = ['--idempotency-part', uid, '--idempotency-part', 'charge(0:cus_1)', '--idempotency-part', 'cus_1'];
      const env = { KEYBRAKE_PROXY_URL: proxy.url, KEYBRAKE_VAULT_KEY: key.vault_key };
      const ok = await keybrakeExec([...parts, '--', 'python3', program, '2000'], env);
      expect(ok.exitCode, ok.stderr).toBe(0);
      expect(ok.stdout).toContain(`idempotency-key=${deriveIdempotencyKey([uid, 'charge(0:cus_1)', 'cus_1'])}`);
      // $20 of $30 spent: a $20 charge is a cap hit; the program exits 1, exec exits 75.
      const capHit = await keybrakeExec([...parts, '--', 'python3', program, '2001'], env);
      expect(capHit.stderr).toContain('charge failed: HTTP 429');
      expect(capHit.exitCode, capHit.stderr).toBe(75);
      expect(capHit.stderr).toContain('cap_exhausted');
      // Without idempotency parts: the same mapping (a program need not take an idempotency key).
      const noParts = await keybrakeExec(['--', 'python3', program, '2002'], env);
      expect(noParts.exitCode, noParts.stderr).toBe(75);
      // A failure that is not Keybrake's (a program error) keeps its own code.
      const own = await keybrakeExec(['--', 'python3', '-c', 'import sys; sys.exit(3)'], env);
      expect(own.exitCode).toBe(3);
      for (const run of [ok, capHit, noParts]) expect(run.stdout + run.stderr).not.toContain(key.vault_key);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('script-level: keybrake-exec maps a tainted refusal to 76 and a revoked key to 79; no program is 127', async () => {
    const proxy = await stripeMockProxy();
    const key = await proxy.issueKey({
      vendor: 'stripe',
      usd_cap: 30,
      allowed_endpoints: ['POST /v1/payment_intents'],
      tainted: true,
    });
    const dir = mkdtempSync(join(tmpdir(), 'keybrake-exec-'));
    const program = join(dir, 'charge.py');
    writeFileSync(program, PLAIN_PROGRAM);
    try {
      const env = { KEYBRAKE_PROXY_URL: proxy.url, KEYBRAKE_VAULT_KEY: key.vault_key };
      const tainted = await keybrakeExec(['--', 'python3', program, '500'], env);
      expect(tainted.exitCode, tainted.stderr).toBe(76);
      expect((await proxy.admin('DELETE', `/vault/keys/${key.key_id}`)).status).toBe(200);
      const revoked = await keybrakeExec(['--', 'python3', program, '501'], env);
      expect(revoked.exitCode, revoked.stderr).toBe(79);
      const missing = await keybrakeExec(['--', join(dir, 'no-such-program')], env);
      expect(missing.exitCode).toBe(127);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
