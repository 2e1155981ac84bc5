// Asserts the outcomes of the kind e2e (e2e/argo-kind/run.sh) from the finished Workflows, the
// namespace's Secrets and the proxy's admin API (KEYBRAKE_URL, KEYBRAKE_API_KEY).
// Usage: node assert.mjs BILLING.json BILLING.secrets.json SUPPORT.json SUPPORT.secrets.json
import { readFileSync } from 'node:fs';
import assert from 'node:assert/strict';

const [billingFile, billingSecretsFile, supportFile, supportSecretsFile] = process.argv.slice(2);
const read = (file) => JSON.parse(readFileSync(file, 'utf8'));
const failures = [];
function check(what, fn) {
  try {
    fn();
    console.error(`  ok   ${what}`);
  } catch (error) {
    failures.push(what);
    console.error(`  FAIL ${what}: ${error.message}`);
  }
}

async function admin(path) {
  const response = await fetch(`${process.env.KEYBRAKE_URL}${path}`, {
    headers: { authorization: `Bearer ${process.env.KEYBRAKE_API_KEY}` },
  });
  assert.equal(response.status, 200, `GET ${path}: HTTP ${response.status}`);
  return response.json();
}

const nodesOf = (wf) => Object.values(wf.status?.nodes ?? {});
const templateOf = (node) => node.templateRef?.template ?? node.templateName;
/** The retry parents of a template: one per step (per item in a fan-out), with their attempts. */
function retryParents(wf, template) {
  const nodes = wf.status.nodes;
  return nodesOf(wf)
    .filter((node) => node.type === 'Retry' && templateOf(node) === template)
    .map((node) => ({
      node,
      attempts: (node.children ?? []).map((id) => nodes[id]).filter((child) => child?.type === 'Pod'),
    }));
}
const exitCode = (pod) => pod.outputs?.exitCode;
const globalOutput = (wf, name) => wf.status.outputs?.parameters?.find((p) => p.name === name)?.value;
const podOutput = (wf, template, name) =>
  nodesOf(wf)
    .filter((node) => node.type === 'Pod' && templateOf(node) === template && node.phase === 'Succeeded')
    .map((node) => node.outputs?.parameters?.find((p) => p.name === name)?.value)
    .find((value) => value !== undefined);
const secretNames = (file) => read(file).items.map((secret) => secret.metadata.name);

// billing-agent: 20 × $25 against $300.
const billing = read(billingFile);
const billingUid = billing.metadata.uid;
console.error(`billing-agent ${billing.metadata.name}: ${billing.status.phase}`);
const charges = retryParents(billing, 'charge-customer');
check('the fan-out has 20 charge steps', () => assert.equal(charges.length, 20));
check('the fan-out stops at the cap: 12 charges succeed, 8 fail', () => {
  assert.equal(charges.filter((c) => c.node.phase === 'Succeeded').length, 12);
  assert.equal(charges.filter((c) => c.node.phase === 'Failed').length, 8);
});
check('every cap-hit step ran once and exited 75 (never retried)', () => {
  for (const { node, attempts } of charges.filter((c) => c.node.phase === 'Failed')) {
    assert.equal(attempts.length, 1, `${node.displayName}: ${attempts.length} attempts`);
    assert.equal(exitCode(attempts[0]), '75', `${node.displayName}: exit ${exitCode(attempts[0])}`);
  }
});
check('the workflow failed (a cap hit stops the run)', () => assert.equal(billing.status.phase, 'Failed'));
check('the onExit revoke reported $300 spent', () =>
  assert.equal(Number(podOutput(billing, 'revoke-vault-key', 'spent-usd')), 300),
);
const billingKey = globalOutput(billing, 'keybrake-key-id');
check('the issue step set the global output keybrake-key-id', () => assert.ok(billingKey));
check('the vault-key Secret is gone after the exit handler', () =>
  assert.ok(!secretNames(billingSecretsFile).includes(`keybrake-${billingUid}`)),
);
if (billingKey) {
  const state = await admin(`/vault/keys/${billingKey}`);
  check('the key is revoked and spent exactly $300', () => {
    assert.equal(state.status, 'revoked');
    assert.equal(state.spent_usd, 300);
  });
  const { calls } = await admin(`/vault/keys/${billingKey}/calls`);
  check('the proxy forwarded 12 charges and refused 8 with cap_exhausted (none twice)', () => {
    assert.equal(calls.filter((c) => c.outcome === 'forwarded').length, 12);
    assert.equal(calls.filter((c) => c.outcome === 'blocked' && c.reason === 'cap_exhausted').length, 8);
  });
  check('no vault key, issuer key or vendor secret in the Workflow object', () => {
    const text = JSON.stringify(billing);
    assert.ok(!/kb_vk_/.test(text), 'a vault key');
    assert.ok(!text.includes(process.env.KEYBRAKE_API_KEY), 'the issuer key');
    assert.ok(!/sk_test_e2e_/.test(text), 'the vendor secret');
  });
}

// support-agent: the untrusted step's charge refused, the sibling's made.
const support = read(supportFile);
const supportUid = support.metadata.uid;
console.error(`support-agent ${support.metadata.name}: ${support.status.phase}`);
check('support-agent succeeded (the untrusted step may fail)', () => assert.equal(support.status.phase, 'Succeeded'));
check('the untrusted step ran once and exited 76 (tainted_request_refused)', () => {
  const [untrusted] = retryParents(support, 'act-on-inbound-email');
  assert.ok(untrusted, 'no act-on-inbound-email step');
  assert.equal(untrusted.node.phase, 'Failed');
  assert.equal(untrusted.attempts.length, 1);
  assert.equal(exitCode(untrusted.attempts[0]), '76');
});
check('the sibling charge step succeeded with the execution key', () => {
  const [charge] = retryParents(support, 'charge-customer');
  assert.equal(charge?.node.phase, 'Succeeded');
});
check('both vault-key Secrets are gone', () => {
  const names = secretNames(supportSecretsFile);
  assert.ok(!names.includes(`keybrake-${supportUid}`) && !names.includes(`keybrake-${supportUid}-tainted`));
});
const taintedKey = podOutput(support, 'issue-tainted-vault-key', 'key-id');
if (taintedKey) {
  const child = await admin(`/vault/keys/${taintedKey}`);
  check('the tainted child is revoked with its parent', () => assert.equal(child.status, 'revoked'));
} else check('the tainted child was issued', () => assert.fail('no key-id output'));

if (failures.length > 0) {
  console.error(`${failures.length} assertion(s) failed`);
  process.exit(1);
}
console.error('all assertions passed');
