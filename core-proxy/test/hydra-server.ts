import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { freePort } from './ports.js';

// No vitest import here: a global setup or another package's test may use this file too.

/**
 * A running ORY Hydra v2.3.0 (`hydra serve all --dev`, DSN=memory; built from the Go module proxy
 * by `scripts/install-hydra.sh`, its path in `HYDRA_BIN`): a real OAuth2/OIDC provider on
 * 127.0.0.1 that issues JWT access tokens by client credentials.
 */
export interface HydraServer {
  /** The issuer, exactly as its tokens' `iss` and its discovery document say it. */
  readonly issuer: string;
  /** The public port's URL (`/oauth2/token`, `/.well-known/...`). */
  readonly publicUrl: string;
  /** The admin port's URL (`/admin/clients`, `/admin/keys/...`). */
  readonly adminUrl: string;
  /** Creates a client-credentials client allowed the audiences; returns its id and secret. */
  createClient(options?: HydraClientOptions): Promise<HydraClient>;
  /** A JWT access token for a client, by the client-credentials grant. */
  token(client: HydraClient, audience?: string): Promise<string>;
  /**
   * Adds a new signing key to Hydra's access-token key set (`POST /admin/keys/hydra.jwt.access-token`):
   * Hydra signs new tokens with it from now on. Returns its `kid`.
   */
  rotateAccessTokenKey(): Promise<string>;
  stop(): Promise<void>;
}

/** A client of {@link HydraServer.createClient}. */
export interface HydraClient {
  readonly clientId: string;
  readonly clientSecret: string;
}

/** Options of {@link HydraServer.createClient}. */
export interface HydraClientOptions {
  /** @default a fresh `workload-<uuid>` */
  readonly clientId?: string;
  /** @default ['keybrake'] */
  readonly audience?: readonly string[];
}

async function waitForReady(url: string, child: ChildProcess, output: () => string): Promise<void> {
  for (let i = 0; i < 1200; i += 1) {
    if (child.exitCode !== null) throw new Error(`hydra exited with ${child.exitCode}:\n${output()}`);
    try {
      const response = await fetch(url);
      if (response.ok) return;
    } catch {
      // not up yet
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`hydra at ${url} did not become ready:\n${output()}`);
}

async function json(response: Response, what: string): Promise<Record<string, unknown>> {
  const text = await response.text();
  if (!response.ok) throw new Error(`hydra ${what}: ${response.status} ${text}`);
  return JSON.parse(text) as Record<string, unknown>;
}

/**
 * Starts Hydra on two free loopback ports, in memory (nothing on disk), with JWT access tokens,
 * and waits until its admin API is ready. Telemetry is off (`--sqa-opt-out`): nothing leaves the machine.
 */
export async function startHydra(): Promise<HydraServer> {
  const bin = process.env.HYDRA_BIN;
  if (!bin) throw new Error('HYDRA_BIN is not set: run the tests with `pnpm test` (scripts/test.sh installs Hydra).');
  const [publicPort, adminPort] = [await freePort(), await freePort()];
  const publicUrl = `http://127.0.0.1:${publicPort}`;
  const adminUrl = `http://127.0.0.1:${adminPort}`;
  let output = '';
  const child = spawn(bin, ['serve', 'all', '--dev', '--sqa-opt-out'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      DSN: 'memory',
      SQA_OPT_OUT: 'true',
      SECRETS_SYSTEM: randomBytes(24).toString('hex'),
      URLS_SELF_ISSUER: `${publicUrl}/`,
      SERVE_PUBLIC_HOST: '127.0.0.1',
      SERVE_PUBLIC_PORT: String(publicPort),
      SERVE_ADMIN_HOST: '127.0.0.1',
      SERVE_ADMIN_PORT: String(adminPort),
      STRATEGIES_ACCESS_TOKEN: 'jwt',
      LOG_LEVEL: 'warn',
    },
  });
  const keep = (chunk: Buffer): void => {
    output = (output + chunk.toString()).slice(-8000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  };
  try {
    await waitForReady(`${adminUrl}/health/ready`, child, () => output);
    await waitForReady(`${publicUrl}/health/ready`, child, () => output);
    const discovery = await json(await fetch(`${publicUrl}/.well-known/openid-configuration`), 'discovery');
    const issuer = discovery.issuer as string;
    return {
      issuer,
      publicUrl,
      adminUrl,
      async createClient(options = {}) {
        const body = await json(
          await fetch(`${adminUrl}/admin/clients`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({
              client_id: options.clientId ?? `workload-${randomUUID()}`,
              client_secret: randomBytes(24).toString('hex'),
              grant_types: ['client_credentials'],
              token_endpoint_auth_method: 'client_secret_basic',
              audience: options.audience ?? ['keybrake'],
              access_token_strategy: 'jwt',
            }),
          }),
          'create client',
        );
        return { clientId: body.client_id as string, clientSecret: body.client_secret as string };
      },
      async token(client, audience = 'keybrake') {
        const body = await json(
          await fetch(`${publicUrl}/oauth2/token`, {
            method: 'POST',
            headers: {
              'content-type': 'application/x-www-form-urlencoded',
              authorization: `Basic ${Buffer.from(`${encodeURIComponent(client.clientId)}:${encodeURIComponent(client.clientSecret)}`).toString('base64')}`,
            },
            body: new URLSearchParams({ grant_type: 'client_credentials', audience }).toString(),
          }),
          'token',
        );
        return body.access_token as string;
      },
      async rotateAccessTokenKey() {
        const kid = `rotated-${randomUUID()}`;
        const body = await json(
          await fetch(`${adminUrl}/admin/keys/hydra.jwt.access-token`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ alg: 'RS256', kid, use: 'sig' }),
          }),
          'create key',
        );
        const keys = body.keys as { kid: string }[];
        return keys[0]?.kid ?? kid;
      },
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
