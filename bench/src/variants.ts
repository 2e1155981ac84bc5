import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { answers, freePort, startService, type Service } from './processes.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DIST = fileURLToPath(new URL('.', import.meta.url));

/** One request shape a load run repeats. */
export interface Target {
  readonly url: string;
  readonly method: 'POST';
  readonly path: string;
  readonly headers: Record<string, string>;
  readonly body: string;
}

/** A variant, started. */
export interface RunningVariant {
  /** Where load goes; with several, the load is split evenly between them. */
  readonly targets: readonly Target[];
  /** The processes whose CPU and memory the variant costs (its own, and its store's). */
  readonly services: readonly Service[];
  stop(): Promise<void>;
}

export interface Variant {
  readonly name: string;
  readonly route: 'payment_intents' | 'chat';
  /** What it is, for the report. */
  readonly description: string;
  start(upstream: string): Promise<RunningVariant>;
}

export const PAYMENT_BODY = 'amount=100&currency=usd';
export const CHAT_BODY = JSON.stringify({ model: 'gpt-mock', messages: [{ role: 'user', content: 'ping' }] });

export function paymentTarget(url: string, path: string, headers: Record<string, string> = {}): Target {
  return {
    url,
    method: 'POST',
    path,
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: 'Bearer sk_test_bench', ...headers },
    body: PAYMENT_BODY,
  };
}

export function chatTarget(url: string, path: string, headers: Record<string, string> = {}): Target {
  return {
    url,
    method: 'POST',
    path,
    headers: { 'content-type': 'application/json', authorization: 'Bearer sk-bench', ...headers },
    body: CHAT_BODY,
  };
}

function stopAll(services: readonly Service[], cleanup: () => void = () => undefined): () => Promise<void> {
  return async () => {
    for (const service of [...services].reverse()) await service.stop();
    cleanup();
  };
}

const direct = (route: Variant['route']): Variant => ({
  name: route === 'chat' ? 'direct (chat)' : 'direct',
  route,
  description: 'straight to the mock upstream: the floor',
  start: async (upstream) => ({
    targets: [
      route === 'chat' ? chatTarget(upstream, '/v1/chat/completions') : paymentTarget(upstream, '/v1/payment_intents'),
    ],
    services: [],
    stop: async () => undefined,
  }),
});

const nginx: Variant = {
  name: 'nginx',
  route: 'payment_intents',
  description: "Debian's nginx, reverse proxy with keep-alive to the upstream, access log off",
  start: async (upstream) => {
    const dir = mkdtempSync(join(tmpdir(), 'bench-nginx-'));
    const port = await freePort();
    const { host } = new URL(upstream);
    writeFileSync(
      join(dir, 'nginx.conf'),
      `worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream mock { server ${host}; keepalive 128; }
  server {
    listen 127.0.0.1:${port};
    keepalive_requests 1000000;
    location / {
      proxy_pass http://mock;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`,
    );
    const service = await startService(
      'nginx',
      'nginx',
      ['-p', dir, '-c', join(dir, 'nginx.conf'), '-g', 'daemon off;'],
      {
        probe: () => answers(`http://127.0.0.1:${port}/`),
      },
    );
    return {
      targets: [paymentTarget(`http://127.0.0.1:${port}`, '/v1/payment_intents')],
      services: [service],
      stop: stopAll([service], () => rmSync(dir, { recursive: true, force: true })),
    };
  },
};

const passthrough: Variant = {
  name: 'node pass-through',
  route: 'payment_intents',
  description: 'node:http + an undici keep-alive pool, no checks: the Node floor',
  start: async (upstream) => {
    const service = await startService('passthrough', process.execPath, [join(DIST, 'passthrough.js'), '0', upstream], {
      ready: /^listening \d+/,
    });
    const port = /^listening (\d+)/.exec(service.output.find((line) => line.startsWith('listening')) ?? '')?.[1];
    return {
      targets: [paymentTarget(`http://127.0.0.1:${port}`, '/v1/payment_intents')],
      services: [service],
      stop: stopAll([service]),
    };
  },
};

async function startRedis(dir: string): Promise<{ service: Service; url: string }> {
  const port = await freePort();
  // As the README asks of a Redis holding caps and audit: AOF, fsync on every write.
  const service = await startService(
    'redis-server',
    'redis-server',
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--dir',
      dir,
      '--save',
      '',
      '--appendonly',
      'yes',
      '--appendfsync',
      'always',
    ],
    { ready: /Ready to accept connections/ },
  );
  return { service, url: `redis://127.0.0.1:${port}` };
}

/** The working tree's `keybrake` CLI. */
const CURRENT_CLI = join(ROOT, 'core-proxy/dist/cli.js');

/**
 * Starts `keybrake serve` on a free port. @param cli which build to run. @default the working tree's
 * @param workers `serve --workers`. @default 1
 */
async function startKeybrake(
  upstream: string,
  dataDir: string,
  redisUrl?: string,
  cli = CURRENT_CLI,
  workers = 1,
): Promise<{ service: Service; url: string }> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const args = workers > 1 ? [cli, 'serve', '--workers', String(workers)] : [cli, 'serve'];
  const service = await startService('keybrake', process.execPath, args, {
    env: {
      KEYBRAKE_HOST: '127.0.0.1',
      KEYBRAKE_PORT: String(port),
      KEYBRAKE_API_KEYS: 'bench-admin',
      KEYBRAKE_DATA_DIR: dataDir,
      KEYBRAKE_LOG_LEVEL: 'warn',
      STRIPE_SECRET_KEY: 'sk_test_bench',
      KEYBRAKE_STRIPE_BASE_URL: upstream,
      ...(redisUrl ? { KEYBRAKE_REDIS_URL: redisUrl, KEYBRAKE_REDIS_PREFIX: 'bench:' } : {}),
    },
    probe: async () => (await fetch(`${url}/readyz`)).ok,
  });
  return { service, url };
}

/** Issues the vault key every Keybrake run uses: a cap far above what a run spends, so no call is refused. */
export async function issueBenchKey(proxyUrl: string, usdCap = 1_000_000): Promise<string> {
  const response = await fetch(`${proxyUrl}/vault/keys`, {
    method: 'POST',
    headers: { authorization: 'Bearer bench-admin', 'content-type': 'application/json' },
    body: JSON.stringify({
      vendor: 'stripe',
      usd_cap: usdCap,
      allowed_endpoints: ['POST /v1/payment_intents'],
      expires_in: '1d',
      agent_run_label: 'bench',
    }),
  });
  if (response.status !== 201) throw new Error(`issue failed: ${response.status} ${await response.text()}`);
  return ((await response.json()) as { vault_key: string }).vault_key;
}

/**
 * Keybrake on one store. @param build another build to run (`--against`), with what to say of it.
 * @default the working tree's
 */
export const keybrake = (
  name: string,
  store: 'embedded' | 'redis',
  replicas: number,
  build?: { readonly cli: string; readonly label: string },
  workers = 1,
): Variant => ({
  name,
  route: 'payment_intents',
  description: `${
    store === 'embedded'
      ? `Keybrake, embedded SQLite store (WAL, synchronous=FULL), every check on${workers > 1 ? `, serve --workers ${workers} on one data directory` : ''}`
      : `Keybrake, ${replicas} replica${replicas > 1 ? 's' : ''} on one Redis (AOF, appendfsync always), every check on${replicas > 1 ? ', load split evenly' : ''}`
  }${build ? `; ${build.label}` : ''}`,
  start: async (upstream) => {
    const dir = mkdtempSync(join(tmpdir(), 'bench-keybrake-'));
    const services: Service[] = [];
    try {
      let redisUrl: string | undefined;
      if (store === 'redis') {
        const redis = await startRedis(dir);
        services.push(redis.service);
        redisUrl = redis.url;
      }
      const urls: string[] = [];
      for (let i = 0; i < replicas; i += 1) {
        const replica = await startKeybrake(upstream, join(dir, `data-${i}`), redisUrl, build?.cli, workers);
        services.push(replica.service);
        urls.push(replica.url);
      }
      const vaultKey = await issueBenchKey(urls[0]!);
      return {
        targets: urls.map((url) =>
          paymentTarget(url, '/stripe/v1/payment_intents', { authorization: `Bearer ${vaultKey}` }),
        ),
        services,
        stop: stopAll(services, () => rmSync(dir, { recursive: true, force: true })),
      };
    } catch (error) {
      await stopAll(services, () => rmSync(dir, { recursive: true, force: true }))();
      throw error;
    }
  },
});

const portkey: Variant = {
  name: 'portkey gateway',
  route: 'chat',
  description: "Portkey's open-source AI gateway (@portkey-ai/gateway from npm), custom host = the upstream",
  start: async (upstream) => {
    const port = await freePort();
    const entry = join(ROOT, 'bench/node_modules/@portkey-ai/gateway/build/start-server.js');
    const service = await startService('portkey', process.execPath, [entry, `--port=${port}`, '--headless'], {
      probe: () => answers(`http://127.0.0.1:${port}/`),
    });
    return {
      targets: [
        chatTarget(`http://127.0.0.1:${port}`, '/v1/chat/completions', {
          'x-portkey-provider': 'openai',
          'x-portkey-custom-host': `${upstream}/v1`,
        }),
      ],
      services: [service],
      stop: stopAll([service]),
    };
  },
};

/**
 * LiteLLM's proxy. The issue asks for a virtual key with `max_budget`, which LiteLLM keeps in its
 * database through Prisma; Prisma's native engines are downloaded from binaries.prisma.sh at
 * setup, which this machine cannot reach, so that variant is reported as not run. This one runs
 * the proxy without a database, with its master key: LiteLLM's routing overhead, a lower bound
 * for its budgeted keys (which add a database read and spend writes).
 */
const LITELLM_BIN = join(
  process.env.KEYBRAKE_CACHE_DIR ?? join(homedir(), '.cache/keybrake'),
  'litellm-1.106.2/bin/litellm',
);

const litellmBudgeted: Variant = {
  name: 'litellm (budgeted key)',
  route: 'chat',
  description: "LiteLLM's proxy with a virtual key that has max_budget (Postgres through Prisma)",
  start: () =>
    Promise.reject(
      new Error(
        "needs LiteLLM's database, reached through Prisma, whose native query and schema engines are downloaded from binaries.prisma.sh at setup: unreachable here (no PyPI or npm package ships them)",
      ),
    ),
};

const litellm: Variant = {
  name: 'litellm (master key, no DB)',
  route: 'chat',
  description:
    "LiteLLM's proxy (PyPI litellm[proxy] 1.106.2), no database, master key: a lower bound for its budgeted keys",
  start: async (upstream) => {
    if (!existsSync(LITELLM_BIN))
      throw new Error(`LiteLLM is not installed (${LITELLM_BIN}): run scripts/install-litellm.sh`);
    const dir = mkdtempSync(join(tmpdir(), 'bench-litellm-'));
    const port = await freePort();
    writeFileSync(
      join(dir, 'config.yaml'),
      `model_list:
  - model_name: gpt-mock
    litellm_params: {model: openai/gpt-mock, api_base: "${upstream}/v1", api_key: sk-fake}
    model_info: {input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}
general_settings:
  master_key: sk-bench-master
litellm_settings:
  set_verbose: false
`,
    );
    const service = await startService(
      'litellm',
      LITELLM_BIN,
      ['--config', join(dir, 'config.yaml'), '--host', '127.0.0.1', '--port', String(port), '--num_workers', '1'],
      {
        env: { LITELLM_LOCAL_MODEL_COST_MAP: 'True', LITELLM_LOG: 'ERROR' },
        probe: async () => (await fetch(`http://127.0.0.1:${port}/health/liveliness`)).ok,
        timeoutMs: 120_000,
        cwd: dir,
      },
    );
    return {
      targets: [
        chatTarget(`http://127.0.0.1:${port}`, '/v1/chat/completions', { authorization: 'Bearer sk-bench-master' }),
      ],
      services: [service],
      stop: stopAll([service], () => rmSync(dir, { recursive: true, force: true })),
    };
  },
};

export const VARIANTS: readonly Variant[] = [
  direct('payment_intents'),
  nginx,
  passthrough,
  keybrake('keybrake embedded', 'embedded', 1),
  keybrake('keybrake embedded ×2 workers', 'embedded', 1, undefined, 2),
  keybrake('keybrake redis', 'redis', 1),
  keybrake('keybrake redis ×2', 'redis', 2),
  direct('chat'),
  portkey,
  litellmBudgeted,
  litellm,
];

export { ROOT, DIST, startRedis, startKeybrake };
