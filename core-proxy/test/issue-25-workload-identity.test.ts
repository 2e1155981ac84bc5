import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { type TestProxy, adminClient, startProxy } from './helpers.js';
import { freePort } from './ports.js';
import { type SigningKey, issuersFile, jwksFile, newSigningKey, signRaw, signToken } from './workload-tokens.js';

/**
 * Issue 25 with Kubernetes-shaped service-account tokens, signed by keys of the test's own and
 * checked against a static JWKS file: no Kubernetes API server runs here, so nothing issues these
 * tokens but the test. Hydra (a real OIDC provider) is `issue-25-hydra.test.ts`.
 */
const K8S_ISSUER = 'https://kubernetes.default.svc.cluster.local';

interface Cluster {
  readonly proxy: TestProxy;
  readonly key: SigningKey;
  readonly jwks: ReturnType<typeof jwksFile>;
  /** A token for a service account of a namespace, valid for an hour unless `claims` says otherwise. */
  token(serviceAccount?: string, claims?: Record<string, unknown>, namespace?: string): string;
}

async function startCluster(): Promise<Cluster> {
  const key = newSigningKey();
  const jwks = jwksFile([key]);
  const file = issuersFile({
    issuers: [
      { issuer: K8S_ISSUER, jwks_file: jwks.path, audiences: ['keybrake'], algorithms: ['RS256'], clock_skew: '30s' },
    ],
    policies: [
      {
        name: 'argo-billing',
        match: {
          iss: K8S_ISSUER,
          'kubernetes.io.namespace': 'argo',
          'kubernetes.io.serviceaccount.name': 'billing-*',
        },
        grant: {
          vendors: ['stripe'],
          max_usd_cap: 50,
          max_daily_usd_cap: 20,
          max_ttl: '2h',
          allowed_endpoints: ['POST /v1/payment_intents', 'GET /v1/payment_intents/*'],
          label_prefix: 'argo/billing/',
          other_keys: 'none',
        },
      },
      {
        name: 'argo-auditor',
        match: { iss: K8S_ISSUER, sub: 'system:serviceaccount:argo:auditor' },
        grant: { vendors: ['stripe'], max_usd_cap: 1, other_keys: 'read' },
      },
    ],
  });
  const proxy = await startProxy({ env: { KEYBRAKE_ISSUERS_FILE: file } });
  const token = (
    serviceAccount = 'billing-agent',
    claims: Record<string, unknown> = {},
    namespace = 'argo',
  ): string => {
    const now = Math.floor(Date.now() / 1000);
    return signToken(key, {
      iss: K8S_ISSUER,
      sub: `system:serviceaccount:${namespace}:${serviceAccount}`,
      aud: ['keybrake'],
      iat: now,
      nbf: now,
      exp: now + 3600,
      'kubernetes.io': {
        namespace,
        serviceaccount: { name: serviceAccount, uid: randomUUID() },
        pod: { name: `${serviceAccount}-x7k2p`, uid: randomUUID() },
      },
      ...claims,
    });
  };
  return { proxy, key, jwks, token };
}

/** A request within the argo-billing policy. */
const WITHIN = {
  vendor: 'stripe',
  usd_cap: 50,
  daily_usd_cap: 20,
  expires_in: '2h',
  allowed_endpoints: ['POST /v1/payment_intents'],
  agent_run_label: 'argo/billing/run-1',
};

/** How many keys the proxy holds, as the operator sees them. */
async function keyCount(proxy: TestProxy): Promise<number> {
  const answer = await proxy.admin('GET', '/vault/keys?limit=100');
  expect(answer.status).toBe(200);
  return (answer.body.keys as unknown[]).length;
}

function expectNoTokenIn(proxy: TestProxy, tokens: readonly string[]): void {
  const logs = proxy.logs().join('\n');
  for (const token of tokens) {
    // The signature part alone is unique to the token and never needed in a log line.
    expect(logs.includes(token.split('.')[2] as string) || logs.includes(token)).toBe(false);
  }
}

describe('issue 25: workload identity, Kubernetes-shaped tokens from a static JWKS file (no API server runs here)', () => {
  it('issues a key within the policy (201) with the identity on the key, and refuses (403) what is beyond it, issuing nothing', async () => {
    const { proxy, token } = await startCluster();
    const bearer = token();
    const workload = adminClient(proxy.url, bearer);

    const issued = await workload('POST', '/vault/keys', WITHIN);
    expect(issued.status, JSON.stringify(issued.body)).toBe(201);
    const identity = {
      issuer: K8S_ISSUER,
      subject: 'system:serviceaccount:argo:billing-agent',
      policy: 'argo-billing',
    };
    expect(issued.body.identity).toEqual(identity);
    const read = await proxy.admin('GET', `/vault/keys/${issued.body.key_id}`);
    expect(read.body.identity).toEqual(identity);
    const listed = await proxy.admin('GET', '/vault/keys');
    expect(listed.body.keys.map((key: { identity: unknown }) => key.identity)).toEqual([identity]);
    // An operator's key has no workload identity.
    const operatorKey = await proxy.issueKey({ vendor: 'stripe', usd_cap: 1, allowed_endpoints: ['GET /v1/charges'] });
    expect(operatorKey.identity).toBeNull();

    const beyond: [string, Record<string, unknown>, string][] = [
      ['another vendor', { vendor: 'resend', allowed_endpoints: ['POST /emails'] }, 'policy_vendor'],
      ['a lifetime cap over the most', { usd_cap: 50.01 }, 'policy_cap'],
      ['no lifetime cap where the policy bounds it', { usd_cap: undefined }, 'policy_cap'],
      ['a daily cap over the most', { daily_usd_cap: 25 }, 'policy_cap'],
      ['a TTL over the most', { expires_in: '3h' }, 'policy_ttl'],
      ['an endpoint outside the ceiling', { allowed_endpoints: ['POST /v1/charges'] }, 'policy_endpoints'],
      ['a wildcard wider than the ceiling', { allowed_endpoints: ['POST /v1/*'] }, 'policy_endpoints'],
      ['another method', { allowed_endpoints: ['DELETE /v1/payment_intents'] }, 'policy_endpoints'],
      ['a label outside the prefix', { agent_run_label: 'argo/payroll/run-1' }, 'policy_label'],
      ['no label where the policy needs one', { agent_run_label: undefined }, 'policy_label'],
    ];
    for (const [what, change, code] of beyond) {
      const body = JSON.parse(JSON.stringify({ ...WITHIN, ...change }));
      const answer = await workload('POST', '/vault/keys', body);
      expect({ what, status: answer.status, code: answer.body.error?.code }).toEqual({ what, status: 403, code });
      expect(answer.body.vault_key).toBeUndefined();
    }
    expect(await keyCount(proxy)).toBe(2);
    // A service account the policy does not match: no policy, nothing issued.
    const stranger = adminClient(proxy.url, token('payroll-agent'));
    const refused = await stranger('POST', '/vault/keys', WITHIN);
    expect([refused.status, refused.body.error.code]).toEqual([403, 'policy_no_match']);
    const otherNamespace = adminClient(proxy.url, token('billing-agent', {}, 'default'));
    expect((await otherNamespace('POST', '/vault/keys', WITHIN)).body.error.code).toBe('policy_no_match');
    expect(await keyCount(proxy)).toBe(2);
    expectNoTokenIn(proxy, [bearer]);
  });

  it('refuses every hostile token with its code, and issues nothing', async () => {
    const { proxy, key, token } = await startCluster();
    const now = Math.floor(Date.now() / 1000);
    const otherKey = newSigningKey(key.kid);
    const claims = JSON.parse(
      Buffer.from((token().split('.')[1] as string).replace(/-/g, '+').replace(/_/g, '/'), 'base64').toString(),
    ) as Record<string, unknown>;
    const payload = JSON.stringify(claims);
    const header = JSON.stringify({ alg: 'RS256', typ: 'JWT', kid: key.kid });
    const hostile: [string, string, number, string][] = [
      ['expired', token('billing-agent', { exp: now - 120, iat: now - 3720, nbf: now - 3720 }), 401, 'token_expired'],
      ['not yet valid (nbf)', token('billing-agent', { nbf: now + 600 }), 401, 'token_not_yet_valid'],
      ['issued in the future (iat)', token('billing-agent', { iat: now + 600 }), 401, 'token_not_yet_valid'],
      ['another issuer', token('billing-agent', { iss: 'https://evil.example' }), 401, 'token_issuer'],
      ['another audience', token('billing-agent', { aud: ['vault'] }), 401, 'token_audience'],
      ['no exp', token('billing-agent', { exp: undefined }), 401, 'token_invalid'],
      ['an unknown kid', signToken(newSigningKey(), claims), 401, 'token_unknown_key'],
      ["another key's signature under the right kid", signToken(otherKey, claims), 401, 'token_signature'],
      ['alg none', signRaw(JSON.stringify({ alg: 'none', typ: 'JWT' }), payload, 'unsigned'), 401, 'token_algorithm'],
      [
        'HS256 signed with the public key (PEM)',
        signRaw(JSON.stringify({ alg: 'HS256', typ: 'JWT', kid: key.kid }), payload, { hmacSecret: key.publicPem }),
        401,
        'token_algorithm',
      ],
      [
        'HS256 signed with the public key (JWK JSON)',
        signRaw(JSON.stringify({ alg: 'HS256', typ: 'JWT' }), payload, { hmacSecret: JSON.stringify(key.publicJwk) }),
        401,
        'token_algorithm',
      ],
      ['huge', token('billing-agent', { padding: 'x'.repeat(9000) }), 401, 'token_too_large'],
      [
        'a duplicated claim (sub), validly signed',
        signRaw(header, payload.replace(/^\{/, '{"sub":"system:serviceaccount:kube-system:admin",'), { key }),
        401,
        'token_duplicate_claim',
      ],
      [
        'a duplicated claim written with an escape (s\\u0075b)',
        signRaw(header, payload.replace(/^\{/, '{"s\\u0075b":"system:serviceaccount:argo:billing-x",'), { key }),
        401,
        'token_duplicate_claim',
      ],
      [
        'a duplicated header parameter (alg)',
        signRaw(JSON.stringify({ alg: 'RS256', kid: key.kid }).replace(/^\{/, '{"alg":"none",'), payload, { key }),
        401,
        'token_duplicate_claim',
      ],
      [
        'a tampered payload',
        `${token().split('.')[0]}.${Buffer.from(payload.replace('billing-agent', 'billing-admin')).toString('base64url')}.${token().split('.')[2]}`,
        401,
        'token_signature',
      ],
      ['garbage in JWT shape', 'abc.def.ghi', 401, 'token_invalid'],
      ['not a JWT nor an issuer key', `kb_admin_${randomUUID()}`, 401, 'unauthorized'],
    ];
    for (const [what, bearer, status, code] of hostile) {
      const answer = await adminClient(proxy.url, bearer)('POST', '/vault/keys', WITHIN);
      expect({ what, status: answer.status, code: answer.body?.error?.code }).toEqual({ what, status, code });
      // The error never echoes the token.
      expect(JSON.stringify(answer.body)).not.toContain(bearer.split('.')[2] || bearer);
    }
    // A valid one still passes: the refusals above were about the tokens.
    expect((await adminClient(proxy.url, token())('POST', '/vault/keys', WITHIN)).status).toBe(201);
    expect(await keyCount(proxy)).toBe(1);
    expectNoTokenIn(
      proxy,
      hostile.map(([, bearer]) => bearer).filter((bearer) => bearer.split('.').length === 3 && bearer.split('.')[2]),
    );
  });

  it("refuses a policy's label prefix or allowlist ceiling escaped with encoded tricks", async () => {
    const { proxy, token } = await startCluster();
    const workload = adminClient(proxy.url, token());
    const tricks: [string, Record<string, unknown>, number, string][] = [
      ['a ".." label segment', { agent_run_label: 'argo/billing/../payroll/x' }, 403, 'policy_label'],
      ['an encoded ".." label segment', { agent_run_label: 'argo/billing/%2e%2e/payroll/x' }, 403, 'policy_label'],
      ['a "." label segment', { agent_run_label: 'argo/billing/./x' }, 403, 'policy_label'],
      ['a "//" in the label', { agent_run_label: 'argo/billing//x' }, 403, 'policy_label'],
      ['a backslash in the label', { agent_run_label: 'argo/billing/..\\payroll' }, 403, 'policy_label'],
      ['a full-width label', { agent_run_label: 'ａrgo/billing/x' }, 403, 'policy_label'],
      ['an upper-case label', { agent_run_label: 'ARGO/BILLING/x' }, 403, 'policy_label'],
      [
        'a ".." climbing out of the ceiling',
        { allowed_endpoints: ['POST /v1/payment_intents/../charges'] },
        403,
        'policy_endpoints',
      ],
      ['an encoded ".."', { allowed_endpoints: ['POST /v1/payment_intents/%2e%2e/charges'] }, 403, 'policy_endpoints'],
      ['an encoded slash', { allowed_endpoints: ['POST /v1/payment_intents%2f..%2fcharges'] }, 400, 'invalid_request'],
      [
        'a double encoding',
        { allowed_endpoints: ['POST /v1/payment_intents/%252e%252e/charges'] },
        400,
        'invalid_request',
      ],
      ['upper case', { allowed_endpoints: ['POST /V1/PAYMENT_INTENTS'] }, 403, 'policy_endpoints'],
      ['a wildcard segment', { allowed_endpoints: ['GET /v1/*/*'] }, 403, 'policy_endpoints'],
      [
        'a wildcard for an id the ceiling names',
        { allowed_endpoints: ['POST /*/payment_intents'] },
        403,
        'policy_endpoints',
      ],
    ];
    for (const [what, change, status, code] of tricks) {
      const answer = await workload('POST', '/vault/keys', { ...WITHIN, ...change });
      expect({ what, status: answer.status, code: answer.body.error?.code }).toEqual({ what, status, code });
    }
    expect(await keyCount(proxy)).toBe(0);
    // Normalized forms that stay within the ceiling are the ceiling's own entries, stored canonical.
    const within = await workload('POST', '/vault/keys', {
      ...WITHIN,
      allowed_endpoints: ['post //v1//payment_intents/', 'GET /v1/payment_intents/./pi_1'],
    });
    expect(within.status, JSON.stringify(within.body)).toBe(201);
    expect(within.body.allowed_endpoints).toEqual(['POST /v1/payment_intents', 'GET /v1/payment_intents/pi_1']);
  });

  it('follows a JWKS file rewritten on disk (a key rotation) without a restart', async () => {
    const { proxy, key, jwks, token } = await startCluster();
    expect((await adminClient(proxy.url, token())('POST', '/vault/keys', WITHIN)).status).toBe(201);
    const next = newSigningKey();
    const claims = JSON.parse(Buffer.from(token().split('.')[1] as string, 'base64url').toString()) as Record<
      string,
      unknown
    >;
    // Before the rotation the new key is unknown.
    expect((await adminClient(proxy.url, signToken(next, claims))('POST', '/vault/keys', WITHIN)).body.error.code).toBe(
      'token_unknown_key',
    );
    jwks.write([next]);
    const rotated = await adminClient(proxy.url, signToken(next, claims))('POST', '/vault/keys', WITHIN);
    expect(rotated.status, JSON.stringify(rotated.body)).toBe(201);
    // The old key is gone from the file: its tokens no longer verify.
    expect((await adminClient(proxy.url, signToken(key, claims))('POST', '/vault/keys', WITHIN)).body.error.code).toBe(
      'token_unknown_key',
    );
  });

  it("keeps a workload to its own keys when its policy says so; an operator's issuer key keeps working", async () => {
    const { proxy, token } = await startCluster();
    const alice = adminClient(proxy.url, token('billing-alice'));
    const bob = adminClient(proxy.url, token('billing-bob'));
    const auditor = adminClient(proxy.url, token('auditor'));
    const aliceKey = (await alice('POST', '/vault/keys', WITHIN)).body;
    const bobKey = (await bob('POST', '/vault/keys', WITHIN)).body;
    expect([aliceKey.key_id, bobKey.key_id].every(Boolean)).toBe(true);

    for (const [method, path] of [
      ['GET', `/vault/keys/${aliceKey.key_id}`],
      ['GET', `/vault/keys/${aliceKey.key_id}/calls`],
      ['DELETE', `/vault/keys/${aliceKey.key_id}`],
      ['POST', `/vault/keys/${aliceKey.key_id}/taint`],
    ] as const) {
      const answer = await bob(method, path);
      expect({ method, path, status: answer.status, code: answer.body.error?.code }).toEqual({
        method,
        path,
        status: 403,
        code: 'policy_not_own_key',
      });
    }
    // Not a child of another's key either.
    const child = await bob('POST', '/vault/keys', { ...WITHIN, usd_cap: 1, parent_key_id: aliceKey.key_id });
    expect([child.status, child.body.error?.code]).toEqual([403, 'policy_not_own_key']);
    // Nothing changed: alice's key is active and untainted, and bob's list holds only his own.
    const aliceView = await proxy.admin('GET', `/vault/keys/${aliceKey.key_id}`);
    expect([aliceView.body.status, aliceView.body.tainted]).toEqual(['active', false]);
    expect((await bob('GET', '/vault/keys')).body.keys.map((key: { key_id: string }) => key.key_id)).toEqual([
      bobKey.key_id,
    ]);
    expect((await alice('GET', `/vault/keys/${aliceKey.key_id}/calls`)).status).toBe(200);
    // A policy that reads others' keys reads them, and still may not revoke them.
    expect((await auditor('GET', `/vault/keys/${aliceKey.key_id}`)).status).toBe(200);
    expect((await auditor('GET', '/vault/keys')).body.keys).toHaveLength(2);
    expect((await auditor('DELETE', `/vault/keys/${aliceKey.key_id}`)).body.error.code).toBe('policy_not_own_key');
    // Its own it may revoke.
    expect((await alice('DELETE', `/vault/keys/${aliceKey.key_id}`)).body).toEqual({
      key_id: aliceKey.key_id,
      status: 'revoked',
    });
    // Operator routes stay the operator's.
    for (const path of ['/audit/verify', '/audit/export', '/audit/checkpoints', '/events']) {
      expect([path, (await alice('GET', path)).body.error?.code]).toEqual([path, 'policy_operator_only']);
    }
    expect((await proxy.admin('GET', '/audit/verify')).body.ok).toBe(true);
    expect((await proxy.admin('DELETE', `/vault/keys/${bobKey.key_id}`)).status).toBe(200);
  });

  it("fails closed (503 issuer_unavailable, nothing issued) when an issuer's discovery cannot be reached", async () => {
    const issuer = `http://127.0.0.1:${await freePort()}`;
    const key = newSigningKey();
    const file = issuersFile({
      issuers: [{ issuer, audiences: ['keybrake'], algorithms: ['RS256'] }],
      policies: [{ name: 'any', match: { iss: issuer, sub: 'billing-*' }, grant: { vendors: ['stripe'] } }],
    });
    const proxy = await startProxy({ env: { KEYBRAKE_ISSUERS_FILE: file } });
    const now = Math.floor(Date.now() / 1000);
    const bearer = signToken(key, { iss: issuer, sub: 'billing-1', aud: 'keybrake', iat: now, exp: now + 600 });
    const answer = await adminClient(proxy.url, bearer)('POST', '/vault/keys', { ...WITHIN, agent_run_label: 'x' });
    expect([answer.status, answer.body.error?.code]).toEqual([503, 'issuer_unavailable']);
    expect(await keyCount(proxy)).toBe(0);
  });
});
