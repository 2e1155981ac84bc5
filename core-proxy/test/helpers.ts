import { randomBytes, randomUUID } from 'node:crypto';
import {
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type Server as HttpServer,
  type ServerResponse,
} from 'node:http';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo, Server } from 'node:net';
import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { Cluster, Redis } from 'ioredis';
import { Agent } from 'undici';
import { expect, inject, onTestFinished } from 'vitest';
import { buildApp } from '../src/http/app.js';
import { REDACTED_LOG_PATHS } from '../src/http/app.js';
import { loadConfig } from '../src/config.js';
import { BUILT_IN_VENDORS } from '../src/vendors/registry.js';
import type { VendorModule } from '../src/vendors/vendor.js';
import { RedisStore, type RedisStoreOptions } from '../src/store/redis/redis-store.js';
import { SqliteStore } from '../src/store/sqlite-store.js';
import type { Store } from '../src/store/store.js';

/**
 * Real-looking secrets for every built-in vendor (from the registry, each in its vendor's shape:
 * stripe-mock wants `sk_test_`), unique per test so a leak can be traced.
 */
export function newSecrets(): Record<string, string> {
  return Object.fromEntries(
    BUILT_IN_VENDORS.flatMap((vendor) =>
      vendor.secretNames.map((name) => [
        name,
        `${vendor.testSecretPrefixes?.[name] ?? ''}${randomBytes(16).toString('hex')}`,
      ]),
    ),
  );
}

export interface TestProxy {
  readonly url: string;
  readonly app: FastifyInstance;
  readonly apiKey: string;
  readonly secrets: Record<string, string>;
  readonly dataDir: string;
  /** The Redis key prefix of this proxy (its deployment). */
  readonly redisPrefix: string;
  /** Moves the proxy's clock. */
  advance(ms: number): void;
  /** Calls the admin API with the issuer key. */
  readonly admin: AdminClient;
  /** Issues a key (201 asserted) and returns the response body. */
  issueKey(fields: Record<string, unknown>): Promise<{ key_id: string; vault_key: string; [k: string]: any }>;
  /** Calls the proxy. */
  call(path: string, init?: RequestInit): Promise<Response>;
  /** Every vault key this proxy has issued so far (from the one response that showed each). */
  issuedVaultKeys(): readonly string[];
  /** The proxy's log lines so far (pino JSON). */
  logs(): readonly string[];
}

export interface TestProxyOptions {
  /** Extra environment for `loadConfig`. */
  readonly env?: Record<string, string>;
  /** Epoch ms the clock starts at. @default Date.now() */
  readonly startAt?: number;
  /** The clock stands still at `startAt` and moves only by `advance` (issue 26: window edges). @default false */
  readonly frozenClock?: boolean;
  /** @default the project's store: `KEYBRAKE_TEST_STORE` ('embedded' or 'redis') */
  readonly store?: 'embedded' | 'redis';
  /** Redis (or `redis+cluster://`) URL. @default the project's Redis */
  readonly redisUrl?: string;
  /** Redis key prefix; replicas of one deployment share it. @default a fresh one per proxy */
  readonly redisPrefix?: string;
  /** Vendor secrets; replicas of one deployment share them. @default fresh ones */
  readonly secrets?: Record<string, string>;
  /** Issuer key. @default a fresh one */
  readonly apiKey?: string;
  /** Redis command timeout. @default 2000 */
  readonly redisTimeoutMs?: number;
  /** More options of the Redis store (sealing intervals, lock TTL). */
  readonly redisStore?: Partial<Omit<RedisStoreOptions, 'url' | 'prefix'>>;
  /** The embedded store's folder (kept after the test). @default a fresh temporary folder, removed after */
  readonly dataDir?: string;
  /** The built-in vendors, as if `BUILT_IN_VENDORS` listed these. @default BUILT_IN_VENDORS */
  readonly builtInVendors?: readonly VendorModule[];
  /** Where to listen, for an engine told the proxy's URL in advance. @default 127.0.0.1, a free port */
  readonly listen?: { readonly host: string; readonly port: number };
}

/** Which store this test project runs the shared suite on. */
export const TEST_STORE: 'embedded' | 'redis' = process.env.KEYBRAKE_TEST_STORE === 'redis' ? 'redis' : 'embedded';

/**
 * A client of a test Redis (`redis://` or `redis+cluster://host:port,...`) and the nodes that hold
 * its keys (the masters of a Cluster, once it is ready: before that its node list is empty), to
 * SCAN each. Disconnect the client when done.
 */
export async function connectRedis(url: string): Promise<{ client: Redis | Cluster; nodes: Redis[] }> {
  if (!url.startsWith('redis+cluster://')) {
    const client = new Redis(url);
    return { client, nodes: [client] };
  }
  const seeds = url.replace(/^redis\+cluster:\/\//, '').split(',');
  const client = new Cluster(
    seeds.map((seed) => ({ host: seed.split(':')[0] as string, port: Number(seed.split(':')[1]) })),
  );
  await new Promise<void>((resolve, reject) => {
    client.once('ready', resolve);
    client.once('error', (error) => {
      client.disconnect();
      reject(error);
    });
  });
  return { client, nodes: client.nodes('master') };
}

/** Every value under a prefix, as text, to search for leaks. */
async function dumpRedis(url: string, prefix: string): Promise<string[]> {
  const { client, nodes } = await connectRedis(url);
  try {
    const values: string[] = [];
    for (const node of nodes) {
      let cursor = '0';
      do {
        const [next, keys] = await node.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
        cursor = next;
        for (const key of keys) {
          const type = await node.type(key);
          if (type === 'string') values.push((await node.get(key)) ?? '');
          else if (type === 'hash') values.push(JSON.stringify(await node.hgetall(key)));
          else if (type === 'list') values.push(...(await node.lrange(key, 0, -1)));
          else if (type === 'set') values.push(...(await node.smembers(key)));
          values.push(key);
        }
      } while (cursor !== '0');
    }
    return values;
  } finally {
    client.disconnect();
  }
}

/**
 * Starts the real app on port 0 with its own embedded store in a temp folder, and closes it after
 * the test. Every test that uses it is also a leak check: on close, every response body and header,
 * every log line and the raw store files are searched for the vendor secrets and for vault keys
 * (a vault key may appear only in the one response that issued it).
 */
export async function startProxy(options: TestProxyOptions = {}): Promise<TestProxy> {
  const secrets = options.secrets ?? newSecrets();
  const apiKey = options.apiKey ?? `kb_admin_${randomUUID()}`;
  const storeKind = options.store ?? TEST_STORE;
  const redisUrl = options.redisUrl ?? (storeKind === 'redis' ? inject('redisUrl') : '');
  const redisPrefix = options.redisPrefix ?? `t:${randomUUID()}:`;
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'keybrake-test-'));
  const config = loadConfig(
    {
      KEYBRAKE_API_KEYS: apiKey,
      KEYBRAKE_DATA_DIR: dataDir,
      ...secrets,
      ...options.env,
    },
    { builtInVendors: options.builtInVendors },
  );
  let offset = options.startAt === undefined ? 0 : options.startAt - Date.now();
  let frozenOffset = 0;
  const logLines: string[] = [];
  const logStream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      logLines.push(chunk.toString());
      done();
    },
  });
  const store: Store =
    storeKind === 'redis'
      ? new RedisStore({
          url: redisUrl,
          prefix: redisPrefix,
          commandTimeoutMs: options.redisTimeoutMs ?? 2000,
          ...options.redisStore,
        })
      : new SqliteStore({ dataDir });
  if (storeKind === 'redis') await waitUntilReachable(store);
  const app = await buildApp({
    config,
    store,
    now: options.frozenClock ? () => (options.startAt ?? 0) + frozenOffset : () => Date.now() + offset,
    logger: { level: 'debug', stream: logStream, redact: REDACTED_LOG_PATHS },
  });
  const responses: { text: string; issuing: string | undefined }[] = [];
  const vaultKeys: string[] = [];
  // The proxy route answers on node:http, outside fastify's hooks: its responses are read off the
  // server itself (every response fastify's onSend below did not see).
  const seenByFastify = new WeakSet<ServerResponse>();
  app.server.prependListener('request', (_request: IncomingMessage, response: ServerResponse) => {
    const parts: string[] = [];
    const record = (chunk: unknown): void => {
      if (typeof chunk === 'string' || Buffer.isBuffer(chunk)) parts.push(chunk.toString());
    };
    const raw = response as unknown as Record<'writeHead' | 'write' | 'end', (...args: unknown[]) => unknown>;
    for (const method of ['writeHead', 'write', 'end'] as const) {
      const original = raw[method].bind(response);
      raw[method] = (...args: unknown[]) => {
        if (method === 'writeHead') parts.push(JSON.stringify(args));
        else record(args[0]);
        return original(...args);
      };
    }
    response.once('finish', () => {
      if (!seenByFastify.has(response))
        responses.push({ text: `${JSON.stringify(response.getHeaders())}\n${parts.join('\n')}`, issuing: undefined });
    });
  });
  app.addHook('onSend', async (request, reply, payload) => {
    seenByFastify.add(reply.raw);
    const text = `${JSON.stringify(reply.getHeaders())}\n${typeof payload === 'string' || Buffer.isBuffer(payload) ? payload.toString() : ''}`;
    const issuing =
      request.method === 'POST' && request.url === '/vault/keys' && reply.statusCode === 201
        ? (JSON.parse(String(payload)) as { vault_key: string }).vault_key
        : undefined;
    responses.push({ text, issuing });
    // Every key issued through this proxy, however it was asked for, is checked for leaks.
    if (issuing !== undefined) vaultKeys.push(issuing);
    return payload;
  });
  await app.listen(options.listen ?? { host: '127.0.0.1', port: 0, backlog: config.listenBacklog });
  const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;

  // This proxy's own client connections: a later proxy may get the same port, and a pooled
  // keep-alive connection to this one must never carry its requests (ECONNRESET in busy runs).
  const dispatcher = new Agent();
  const withDispatcher = (init: RequestInit = {}): RequestInit => ({ ...init, dispatcher }) as unknown as RequestInit;

  onTestFinished(async () => {
    await dispatcher.destroy();
    await app.close();
    const storeFiles =
      storeKind === 'redis'
        ? await dumpRedis(redisUrl, redisPrefix)
        : readdirSync(dataDir).map((file) => readFileSync(join(dataDir, file)).toString('latin1'));
    if (options.dataDir === undefined) rmSync(dataDir, { recursive: true, force: true });
    const secretValues = Object.values(secrets);
    // `includes` first, `expect` only on a hit: lines × keys expectations take minutes in a big test.
    for (const line of logLines) {
      for (const secret of [...secretValues, ...vaultKeys])
        if (line.includes(secret)) expect(line, 'a log line leaks a secret').not.toContain(secret);
    }
    for (const file of storeFiles) {
      for (const secret of [...secretValues, ...vaultKeys])
        if (file.includes(secret)) expect(file.includes(secret), 'the store leaks a secret').toBe(false);
    }
    for (const response of responses) {
      for (const secret of secretValues)
        if (response.text.includes(secret))
          expect(response.text, 'a response leaks a vendor secret').not.toContain(secret);
      for (const vaultKey of vaultKeys) {
        if (vaultKey !== response.issuing && response.text.includes(vaultKey))
          expect(response.text, 'a response leaks a vault key').not.toContain(vaultKey);
      }
    }
  });

  const admin = adminClient(url, apiKey, dispatcher);

  return {
    url,
    app,
    apiKey,
    secrets,
    dataDir,
    redisPrefix,
    advance: (ms) => {
      offset += ms;
      frozenOffset += ms;
    },
    admin,
    async issueKey(fields) {
      const response = await admin('POST', '/vault/keys', {
        expires_in: '1h',
        agent_run_label: `test/${randomUUID()}`,
        ...fields,
      });
      expect(response.status, JSON.stringify(response.body)).toBe(201);
      return response.body;
    },
    call: (path, init) => fetch(`${url}${path}`, withDispatcher(init)),
    issuedVaultKeys: () => [...vaultKeys],
    logs: () => [...logLines],
  };
}

/**
 * What the replicas of one deployment share: one Redis and key prefix (a fresh one), the same
 * vendor secrets and issuer key. Each `startProxy` with it is another replica with its own store
 * client.
 */
export function redisDeployment(redisUrl: string): TestProxyOptions {
  return {
    store: 'redis',
    redisUrl,
    redisPrefix: `t:${randomUUID()}:`,
    secrets: newSecrets(),
    apiKey: `kb_admin_${randomUUID()}`,
  };
}

/** Starts the proxy in front of stripe-mock (Stripe's own API mock, started by the global setup). */
export function stripeMockProxy(options: TestProxyOptions = {}): Promise<TestProxy> {
  return startProxy({ ...options, env: { KEYBRAKE_STRIPE_BASE_URL: inject('stripeMockUrl'), ...options.env } });
}

/** One answer of the admin API. */
export interface AdminAnswer {
  readonly status: number;
  /** The parsed JSON body, loosely typed for assertions; `undefined` for an empty body. */
  readonly body: any;
  readonly headers: Headers;
}

/** Calls the admin API of one proxy with an issuer key. */
export type AdminClient = (method: string, path: string, body?: unknown) => Promise<AdminAnswer>;

/**
 * The admin API over fetch, for a proxy in this process or a spawned `keybrake serve`.
 * @param dispatcher the undici agent to send through. @default fetch's global one
 */
export function adminClient(baseUrl: string, apiKey: string, dispatcher?: Agent): AdminClient {
  return async (method, path, body) => {
    const response = await fetch(`${baseUrl}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${apiKey}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      ...(dispatcher === undefined ? {} : { dispatcher }),
    } as RequestInit);
    const text = await response.text();
    return { status: response.status, body: text ? JSON.parse(text) : undefined, headers: response.headers };
  };
}

/** Waits for a store to answer (a Redis client connects in the background and fails closed until then). */
async function waitUntilReachable(store: Store): Promise<void> {
  for (let i = 0; i < 200; i += 1) {
    try {
      await store.ping();
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }
  throw new Error('the store did not become reachable');
}

/**
 * Listens on 127.0.0.1, on a port the OS chooses, and closes the server (and, for an HTTP server,
 * its open connections) when the test ends. Returns the port.
 */
export async function listenOnLoopback(server: Server | HttpServer): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  onTestFinished(
    () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        if ('closeAllConnections' in server) server.closeAllConnections();
      }),
  );
  return (server.address() as AddressInfo).port;
}

/** One request as the fake vendor received it. */
export interface ReceivedRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingMessage['headers'];
  readonly body: string;
  /** The body bytes as received (a compressed body is not valid UTF-8). */
  readonly rawBody: Buffer;
}

/**
 * A fake vendor of our own on port 0, for what stripe-mock cannot show (it ignores
 * Idempotency-Key, keeps no state, never times out). Tests that use it say "fake vendor".
 */
export async function startFakeVendor(
  handler: (request: ReceivedRequest, response: ServerResponse) => void | Promise<void>,
): Promise<{ url: string; received: ReceivedRequest[] }> {
  const received: ReceivedRequest[] = [];
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const rawBody = Buffer.concat(chunks);
      const entry = {
        method: request.method ?? '',
        url: request.url ?? '',
        headers: request.headers,
        body: rawBody.toString(),
        rawBody,
      };
      received.push(entry);
      void handler(entry, response);
    });
  });
  const port = await listenOnLoopback(server);
  return { url: `http://127.0.0.1:${port}`, received };
}

/**
 * A fake vendor (ours) for limit tests (issue 26) that makes the calls overlap by construction, not
 * by timing: it holds the first charge it receives until `proxy()` has refused a call over a
 * request or concurrency limit (its `keybrake_limit_refusals_total`), and every other charge
 * `holdMs`; with `holdFirst: n` (the key's `max_concurrent`) the first n charges are held. On a
 * loaded machine the engine's branches may start far apart; the held charges keep the limit taken
 * until another branch has tried and been refused. If no refusal comes in
 * `giveUpMs` it answers anyway, and the test's own "refusals happened" assertion fails.
 */
export async function startHoldingChargeVendor(
  proxy: () => TestProxy | undefined,
  options: { holdMs?: number; giveUpMs?: number; holdFirst?: number } = {},
): Promise<{ url: string; charges: () => number; maxInFlight: () => number }> {
  let inFlight = 0;
  let maxInFlight = 0;
  let charges = 0;
  const refused = async (): Promise<boolean> => {
    const current = proxy();
    if (!current) return false;
    const text = await (await current.call('/metrics')).text();
    return [...text.matchAll(/^keybrake_limit_refusals_total\{[^}]*\} (\d+)/gm)].some((match) => Number(match[1]) > 0);
  };
  const vendor = await startFakeVendor(async (_request, response) => {
    inFlight += 1;
    charges += 1;
    const charge = charges;
    maxInFlight = Math.max(maxInFlight, inFlight);
    if (charge <= (options.holdFirst ?? 1)) {
      const deadline = Date.now() + (options.giveUpMs ?? 60_000);
      while (Date.now() < deadline && !(await refused())) await new Promise((resolve) => setTimeout(resolve, 50));
    } else {
      await new Promise((resolve) => setTimeout(resolve, options.holdMs ?? 50));
    }
    inFlight -= 1;
    sendJson(response, 200, { id: `pi_${charge}`, object: 'payment_intent', amount: 100, currency: 'usd' });
  });
  return { url: vendor.url, charges: () => charges, maxInFlight: () => maxInFlight };
}

/** Sends JSON from a fake vendor. */
export function sendJson(
  response: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  response.writeHead(status, { 'content-type': 'application/json', ...headers });
  response.end(JSON.stringify(body));
}

/** A Stripe key for `POST /v1/payment_intents`, with a one-hour TTL, issued through `admin` (201 asserted). */
export async function issueStripeKey(admin: AdminClient, usdCap = 100): Promise<{ key_id: string; vault_key: string }> {
  const issued = await admin('POST', '/vault/keys', {
    vendor: 'stripe',
    usd_cap: usdCap,
    allowed_endpoints: ['POST /v1/payment_intents'],
    expires_in: '1h',
  });
  expect(issued.status).toBe(201);
  return issued.body as { key_id: string; vault_key: string };
}

/**
 * Issues a child of `parentId` (Stripe, $5, one hour, `POST /v1/payment_intents`), returning the
 * raw answer: 201, or a refusal while its parent is revoked or tainted (the races of issues 16, 17).
 */
export function issueStripeChild(proxy: TestProxy, parentId: string): ReturnType<AdminClient> {
  return proxy.admin('POST', '/vault/keys', {
    vendor: 'stripe',
    usd_cap: 5,
    allowed_endpoints: ['POST /v1/payment_intents'],
    expires_in: '1h',
    parent_key_id: parentId,
  });
}

/** Form-encoded Stripe charge through the proxy. */
export function stripeCharge(
  proxy: TestProxy,
  vaultKey: string,
  amount: number,
  extra: Record<string, string> = {},
): Promise<Response> {
  return proxy.call('/stripe/v1/payment_intents', {
    method: 'POST',
    headers: { authorization: `Bearer ${vaultKey}`, 'content-type': 'application/x-www-form-urlencoded', ...extra },
    body: new URLSearchParams({ amount: String(amount), currency: 'usd' }).toString(),
  });
}

/** Sends a request with the path exactly as given (fetch would normalize `..` and `%2e` itself). */
export function rawRequest(
  baseUrl: string,
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: string,
): Promise<{ status: number; body: string; headers: IncomingMessage['headers'] }> {
  const { hostname, port } = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const request = httpRequest({ hostname, port, method, path, headers }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () =>
        resolve({
          status: response.statusCode ?? 0,
          body: Buffer.concat(chunks).toString(),
          headers: response.headers,
        }),
      );
    });
    request.on('error', reject);
    request.end(body);
  });
}

/** A response's JSON body, loosely typed for assertions. */
export function json(response: Response): Promise<any> {
  return response.json() as Promise<any>;
}
