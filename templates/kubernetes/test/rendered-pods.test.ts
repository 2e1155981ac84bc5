import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createPublicKey } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, onTestFinished } from 'vitest';
import { DOCKERFILE, type Manifest, byKind, one, render, secretData } from './chart.js';
import {
  type HttpAnswer,
  type PodNetwork,
  type PodProcess,
  dockerfileImage,
  runPod,
  startPodNetwork,
} from './pod-sandbox.js';

const REPOSITORY = fileURLToPath(new URL('../../..', import.meta.url));
/** The proxy image, stood in for by the built repository (`pnpm run build`) at the Dockerfile's WORKDIR. */
const PROXY_IMAGE = dockerfileImage(DOCKERFILE, REPOSITORY, 'core-proxy');
/** Debian's redis-server (on the host's /usr) stands in for the chart's redis image. */
const REDIS_IMAGE = { env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' } };
const STRIPE_MOCK_PORT = 12111;

function stripeMockBinary(): string {
  const binary = process.env.STRIPE_MOCK_BIN;
  if (!binary)
    throw new Error('STRIPE_MOCK_BIN is not set: run the tests with `pnpm test` (scripts/test.sh installs it).');
  return binary;
}

async function until<T>(what: string, attempt: () => Promise<T | undefined>, pod?: PodProcess): Promise<T> {
  // Bounded by count, not time: each attempt is a probe (a process started), then 100 ms.
  for (let i = 0; i < 1200; i += 1) {
    const value = await attempt().catch(() => undefined);
    if (value !== undefined) return value;
    if (pod && (pod.child.exitCode !== null || pod.child.signalCode !== null)) {
      throw new Error(`${what}: the pod exited:\n${pod.output()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${what}: gave up${pod ? `\n${pod.output()}` : ''}`);
}

/** Runs `command` inside the pod network until the test ends (then SIGTERM, and waits for its exit). */
function spawnUntilTestEnds(network: PodNetwork, command: readonly string[]): void {
  const child = network.spawn(command);
  onTestFinished(
    () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  );
}

/** stripe-mock inside the pod network, where the proxy's KEYBRAKE_STRIPE_BASE_URL points. */
async function startStripeMockIn(network: PodNetwork): Promise<void> {
  spawnUntilTestEnds(network, [
    stripeMockBinary(),
    '-http-addr',
    `127.0.0.1:${STRIPE_MOCK_PORT}`,
    '-https-addr',
    `127.0.0.1:${STRIPE_MOCK_PORT + 1}`,
  ]);
  await until('stripe-mock', async () => {
    const answer = await network.request('GET', `http://127.0.0.1:${STRIPE_MOCK_PORT}/v1/customers`, {
      headers: { authorization: 'Bearer sk_test_123' },
    });
    return answer.status === 200 ? true : undefined;
  });
}

const HTTPBIN_PORT = 12180;

/** go-httpbin (a real third-party echo server) inside the pod network, standing in as a declared vendor. */
async function startGoHttpbinIn(network: PodNetwork): Promise<void> {
  const binary = process.env.GO_HTTPBIN_BIN;
  if (!binary)
    throw new Error('GO_HTTPBIN_BIN is not set: run the tests with `pnpm test` (scripts/test.sh installs it).');
  spawnUntilTestEnds(network, [binary, '-host', '127.0.0.1', '-port', String(HTTPBIN_PORT), '-log-level', 'WARN']);
  await until('go-httpbin', async () =>
    (await network.request('GET', `http://127.0.0.1:${HTTPBIN_PORT}/get`)).status === 200 ? true : undefined,
  );
}

/** The proxy's readiness as the kubelet checks it: the rendered readinessProbe's path and port. */
async function probe(
  network: PodNetwork,
  deployment: Manifest,
  kind: 'readinessProbe' | 'livenessProbe',
): Promise<HttpAnswer> {
  const container = deployment.spec.template.spec.containers[0];
  const httpGet = container[kind].httpGet;
  const port = container.ports.find((p: any) => p.name === httpGet.port)?.containerPort ?? httpGet.port;
  return network.request('GET', `http://127.0.0.1:${port}${httpGet.path}`);
}

function tempFolder(prefix: string): string {
  const folder = mkdtempSync(join(tmpdir(), prefix));
  onTestFinished(() => rmSync(folder, { recursive: true, force: true }));
  return folder;
}

async function startProxyPod(
  network: PodNetwork,
  manifests: Manifest[],
  claims?: Record<string, string>,
): Promise<PodProcess> {
  const deployment = one(manifests, 'Deployment');
  const pod = await runPod(network, deployment.spec.template, 'proxy', PROXY_IMAGE, {
    secrets: byKind(manifests, 'Secret'),
    configMaps: byKind(manifests, 'ConfigMap'),
    hosts: byKind(manifests, 'Service').map((s) => s.metadata.name),
    ...(claims ? { claims } : {}),
  });
  onTestFinished(async () => {
    await pod.stop('SIGKILL');
  });
  await until(
    'the proxy pod is ready (/readyz)',
    async () => ((await probe(network, deployment, 'readinessProbe')).status === 200 ? true : undefined),
    pod,
  );
  return pod;
}

function admin(network: PodNetwork, issuerKey: string) {
  return (method: string, path: string, body?: unknown) =>
    network.request(method, `http://127.0.0.1:8080${path}`, {
      headers: {
        authorization: `Bearer ${issuerKey}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
}

/** A vault key for one endpoint of `vendor`, valid an hour. */
async function issueKey(call: ReturnType<typeof admin>, vendor: string, usdCap: number, endpoint: string) {
  const issued = await call('POST', '/vault/keys', {
    vendor,
    usd_cap: usdCap,
    allowed_endpoints: [endpoint],
    expires_in: '1h',
  });
  expect(issued.status, issued.body).toBe(201);
  return issued.json() as { key_id: string; vault_key: string };
}

async function charge(network: PodNetwork, vaultKey: string, idempotencyKey: string): Promise<HttpAnswer> {
  return network.request('POST', 'http://127.0.0.1:8080/stripe/v1/payment_intents', {
    headers: {
      authorization: `Bearer ${vaultKey}`,
      'content-type': 'application/x-www-form-urlencoded',
      'idempotency-key': idempotencyKey,
    },
    body: 'amount=2000&currency=usd',
  });
}

function expectNoLeak(output: string, secrets: readonly string[]): void {
  for (const secret of secrets) expect(output.includes(secret), 'a pod printed a secret').toBe(false);
}

describe('the rendered pods, run for real in a kubelet stand-in (network + mount namespace, chroot, read-only root; not a container runtime)', () => {
  it('bundled Redis: the StatefulSet’s redis-server and the Deployment’s proxy start from the rendered spec, pass their probes, charge through stripe-mock and keep state in Redis', async () => {
    if (!existsSync(join(REPOSITORY, 'core-proxy/dist/cli.js')))
      throw new Error('core-proxy is not built: run `pnpm run build`.');
    const stripeSecret = `sk_test_${randomBytes(16).toString('hex')}`;
    const issuerKey = `kb_admin_${randomBytes(20).toString('hex')}`;
    const { manifests } = await render({
      set: { replicaCount: 2, 'vendors.stripe.enabled': true },
      setString: {
        'vendors.stripe.secretKey': stripeSecret,
        'issuerKeys.keys[0]': issuerKey,
        'config.stripeBaseUrl': `http://127.0.0.1:${STRIPE_MOCK_PORT}`,
      },
    });
    const network = await startPodNetwork();
    onTestFinished(() => network.close());
    await startStripeMockIn(network);

    // Redis, from the StatefulSet: its command, its redis.conf ConfigMap, its password Secret, /data on a "PVC".
    const statefulSet = one(manifests, 'StatefulSet');
    const redisData = tempFolder('keybrake-redis-pvc-');
    const redis = await runPod(network, statefulSet.spec.template, 'redis', REDIS_IMAGE, {
      secrets: byKind(manifests, 'Secret'),
      configMaps: byKind(manifests, 'ConfigMap'),
      claims: { [statefulSet.spec.volumeClaimTemplates[0].metadata.name]: redisData },
    });
    onTestFinished(async () => {
      await redis.stop('SIGKILL');
    });
    const redisProbe = statefulSet.spec.template.spec.containers[0].readinessProbe.exec.command as string[];
    await until(
      'redis readinessProbe',
      async () => ((await redis.exec(redisProbe)).code === 0 ? true : undefined),
      redis,
    );
    // The password is required: without it Redis refuses. It reached redis-server through the
    // environment and its command line, which Redis overwrites with its process title, so the
    // node's process list does not show it.
    const redisPassword = secretData(one(manifests, 'Secret', 'keybrake-redis')).REDIS_PASSWORD!;
    const cmdline = readFileSync(`/proc/${redis.pid}/cmdline`, 'utf8');
    expect(cmdline).toContain('redis-server');
    expect(cmdline.includes(redisPassword), 'the Redis password in its command line').toBe(false);
    const noAuth = await network.exec(['redis-cli', '-p', '6379', 'ping']).catch((e) => String(e.stdout ?? e));
    expect(noAuth).toMatch(/NOAUTH/);

    const proxy = await startProxyPod(network, manifests);
    expect((await probe(network, one(manifests, 'Deployment'), 'livenessProbe')).status).toBe(200);

    const call = admin(network, issuerKey);
    const issued = await call('POST', '/vault/keys', {
      vendor: 'stripe',
      usd_cap: 50,
      allowed_endpoints: ['POST /v1/payment_intents'],
      expires_in: '1h',
      agent_run_label: 'k8s/rendered-pod',
    });
    expect(issued.status, issued.body).toBe(201);
    const key = issued.json();
    const first = await charge(network, key.vault_key, `rendered-pod-${randomBytes(4).toString('hex')}`);
    expect(first.status, first.body).toBe(200);
    expect(first.json().object).toBe('payment_intent');
    const spent = (await call('GET', `/vault/keys/${key.key_id}`)).json();
    expect(spent.spent_usd).toBe(20);

    // The state is in the bundled Redis (the proxy read the URL file, not the embedded store), and
    // Redis wrote its append-only file to its volume (the rendered redis.conf took effect).
    const redisKeys = await redis.exec(['redis-cli', '-h', '127.0.0.1', '--scan', '--pattern', 'keybrake:*']);
    expect(redisKeys.code).toBe(0);
    expect(redisKeys.stdout).toContain(key.key_id);
    const fsync = await redis.exec(['redis-cli', '-h', '127.0.0.1', 'config', 'get', 'appendfsync']);
    expect(fsync.stdout.split('\n')).toContain('always');
    expect(readdirSync(redisData)).toContain('appendonlydir');
    expect((await call('GET', '/audit/verify')).json().ok).toBe(true);

    // The root filesystem is read-only; the proxy runs as the image's non-root user.
    // Even root cannot write to it (the proxy's own user could not anyway).
    const write = await proxy.exec(['touch', '/x'], { asRoot: true });
    expect(write.code).not.toBe(0);
    expect(write.stderr).toMatch(/Read-only file system/);
    expect((await proxy.exec(['touch', '/tmp/x'])).code, 'the /tmp emptyDir is writable').toBe(0);
    expect((await proxy.exec(['id', '-u'])).stdout.trim()).toBe('1000');

    // SIGTERM (what the kubelet sends after preStop) drains and exits 0.
    expect(await proxy.stop('SIGTERM')).toBe(0);
    expectNoLeak(proxy.output() + redis.output(), [stripeSecret, issuerKey, redisPassword, key.vault_key]);
    expect(proxy.output()).toContain('"store":"redis"');
  });

  it('embedded store: one replica keeps keys, spend and the audit chain on its PVC across a pod restart, and signs with the audit key from its Secret', async () => {
    if (!existsSync(join(REPOSITORY, 'core-proxy/dist/cli.js')))
      throw new Error('core-proxy is not built: run `pnpm run build`.');
    const stripeSecret = `sk_test_${randomBytes(16).toString('hex')}`;
    const { manifests } = await render({
      set: { replicaCount: 1, 'redis.mode': 'none', 'vendors.stripe.enabled': true },
      setString: {
        'vendors.stripe.secretKey': stripeSecret,
        'config.stripeBaseUrl': `http://127.0.0.1:${STRIPE_MOCK_PORT}`,
      },
    });
    const issuerKey = secretData(one(manifests, 'Secret', 'keybrake-issuer-keys')).KEYBRAKE_API_KEYS!;
    const auditPem = secretData(one(manifests, 'Secret', 'keybrake-audit-signing-key')).KEYBRAKE_AUDIT_SIGNING_KEY!;
    const network = await startPodNetwork();
    onTestFinished(() => network.close());
    await startStripeMockIn(network);
    const claim = tempFolder('keybrake-data-pvc-');
    const claims = { data: claim };

    const first = await startProxyPod(network, manifests, claims);
    const call = admin(network, issuerKey);
    const key = await issueKey(call, 'stripe', 30, 'POST /v1/payment_intents');
    expect((await charge(network, key.vault_key, 'embedded-1')).status).toBe(200);
    expect((await call('POST', '/audit/checkpoints')).status).toBe(201);
    expect(await first.stop('SIGTERM')).toBe(0);
    expect(readdirSync(claim)).toContain('keybrake.sqlite3');
    // With the keys given as files, the proxy generated nothing in its data folder.
    expect(readdirSync(claim)).not.toContain('dev-issuer-key');
    expect(readdirSync(claim)).not.toContain('audit-signing-key.pem');

    // A new pod on the same claim: the key, its spend and the chain are still there.
    const second = await startProxyPod(network, manifests, claims);
    const shown = (await call('GET', `/vault/keys/${key.key_id}`)).json();
    expect(shown.spent_usd).toBe(20);
    const capHit = await charge(network, key.vault_key, 'embedded-2');
    expect(capHit.status).toBe(429);
    const verify = (await call('GET', '/audit/verify')).json();
    expect(verify.ok).toBe(true);
    expect(verify.records).toBe(2);
    // The checkpoints are signed with the Secret's key (the public half matches).
    const checkpoints = (await call('GET', '/audit/checkpoints')).json();
    const expected = createPublicKey(auditPem).export({ type: 'spki', format: 'pem' }).toString();
    expect(checkpoints.public_key.pem).toBe(expected);
    expect(checkpoints.checkpoints.length).toBeGreaterThan(0);
    expect(await second.stop('SIGTERM')).toBe(0);
    expectNoLeak(first.output() + second.output(), [stripeSecret, issuerKey, key.vault_key, auditPem.split('\n')[1]!]);
  });
  it('issue 20: a vendor declared through declaredVendors (its file from the chart’s ConfigMap, its secret from your Secret) serves calls, capped, with the secret injected and scrubbed', async () => {
    if (!existsSync(join(REPOSITORY, 'core-proxy/dist/cli.js')))
      throw new Error('core-proxy is not built: run `pnpm run build`.');
    const token = `acme_${randomBytes(16).toString('hex')}`;
    const file = `vendors:
  - name: acme-echo
    base_url: http://127.0.0.1:${HTTPBIN_PORT}/anything
    vault_key: { scheme: bearer }
    secret: { env: ACME_ECHO_TOKEN, scheme: header, header: X-Acme-Token }
    costs: [{ endpoint: POST /v1/sms, usd: 0.05 }]
`;
    const valuesFile = join(tempFolder('keybrake-declared-values-'), 'values.yaml');
    writeFileSync(
      valuesFile,
      JSON.stringify({
        replicaCount: 1,
        redis: { mode: 'none' },
        embedded: { persistence: { enabled: false } },
        declaredVendors: { file, existingSecret: 'acme-secrets', secretKeys: ['ACME_ECHO_TOKEN'] },
      }),
    );
    const { manifests } = await render({ valuesFiles: [valuesFile] });
    // The Secret the operator made (kubectl create secret generic acme-secrets --from-file=ACME_ECHO_TOKEN=...).
    const operatorSecret: Manifest = {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'acme-secrets', namespace: 'keybrake' },
      data: { ACME_ECHO_TOKEN: Buffer.from(token).toString('base64') },
    };
    const issuerKey = secretData(one(manifests, 'Secret', 'keybrake-issuer-keys')).KEYBRAKE_API_KEYS!;
    const network = await startPodNetwork();
    onTestFinished(() => network.close());
    await startGoHttpbinIn(network);
    const pod = await startProxyPod(network, [...manifests, operatorSecret]);
    const call = admin(network, issuerKey);
    const key = await issueKey(call, 'acme-echo', 0.1, 'POST /v1/sms');
    const sms = () =>
      network.request('POST', 'http://127.0.0.1:8080/acme-echo/v1/sms', {
        headers: { authorization: `Bearer ${key.vault_key}`, 'content-type': 'application/json' },
        body: '{"to":"+15550100"}',
      });
    for (let i = 0; i < 2; i += 1) {
      const answer = await sms();
      expect(answer.status, answer.body).toBe(200);
      // httpbin echoes what it got: the secret read from the mounted file, removed from the echo.
      expect(answer.json().headers['X-Acme-Token']).toEqual(['[secret removed by keybrake]']);
      expect(answer.json().headers.Authorization).toBeUndefined();
      expect(answer.body).not.toContain(token);
    }
    expect((await sms()).status).toBe(429);
    expect((await call('GET', `/vault/keys/${key.key_id}`)).json().spent_usd).toBe(0.1);
    expect(await pod.stop('SIGTERM')).toBe(0);
    expectNoLeak(pod.output(), [token, issuerKey, key.vault_key]);
  });
});
