/**
 * The Python package's pytest suite (integrations/python/tests), run from vitest so that
 * `scripts/test.sh` and CI run and count it: each test here starts the real proxy (in-process,
 * with its leak check on close) and the upstreams a group of pytest modules needs, hands their
 * URLs to pytest through the environment, and passes when pytest does.
 *
 * Upstreams: stripe-mock behind a counting relay (the witness of what reached Stripe); Twilio and
 * Resend have no mock that runs here, so fake vendors of our own ("stand-ins") play them; a second
 * proxy whose vendors all answer their own 429 (stand-ins too), to show a vendor's 429 is not a
 * cap hit.
 */
import { spawn } from 'node:child_process';
import { appendFileSync, existsSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { describe, expect, inject, it, onTestFinished } from 'vitest';
import { startRelay } from '../../../core-proxy/test/counting-relay.js';
import { sendJson, startFakeVendor, startProxy } from '../../../core-proxy/test/helpers.js';

const PACKAGE_DIR = fileURLToPath(new URL('..', import.meta.url));

/** The package's virtualenv python: scripts/test.sh exports it (scripts/install-python.sh). */
function python(): string {
  const fromEnv = process.env.KEYBRAKE_PYTHON;
  if (fromEnv) return fromEnv;
  const local = `${PACKAGE_DIR}.venv/bin/python`;
  if (existsSync(local)) return local;
  throw new Error('KEYBRAKE_PYTHON is not set: run `bash scripts/install-python.sh` or the tests with `pnpm test`.');
}

/** Runs pytest on some modules of integrations/python/tests with `env` added; resolves with its exit code and output. */
function pytest(modules: readonly string[], env: Record<string, string>): Promise<{ code: number; output: string }> {
  return run(['-m', 'pytest', '-q', '-rfE', ...modules.map((module) => `tests/${module}`)], env);
}

/** Runs the venv's python with `args` in integrations/python, `env` added; resolves with its exit code and output. */
async function run(args: readonly string[], env: Record<string, string>): Promise<{ code: number; output: string }> {
  const child = spawn(python(), args, {
    cwd: PACKAGE_DIR,
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '',
      PYTHONDONTWRITEBYTECODE: '1',
      ...(process.env.PYTEST_ADDOPTS ? { PYTEST_ADDOPTS: process.env.PYTEST_ADDOPTS } : {}),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  onTestFinished(() => {
    child.kill('SIGKILL');
  });
  let output = '';
  const collect = (chunk: Buffer): void => {
    output += chunk.toString();
    if (process.env.KEYBRAKE_PYTEST_LOG) appendFileSync(process.env.KEYBRAKE_PYTEST_LOG, chunk);
  };
  child.stdout.on('data', collect);
  child.stderr.on('data', collect);
  const code = await new Promise<number>((resolve) => child.once('exit', (status) => resolve(status ?? -1)));
  const summary = output.trim().split('\n').at(-1) ?? '';
  console.info(`[figures] python ${args.join(' ')}: ${summary}`);
  return { code, output };
}

/** A tiny HTTP server answering GET with `report()` as JSON: how pytest reads the stand-ins' and the relay's counts. */
async function startWitness(report: () => unknown): Promise<string> {
  const server = createServer((_request, response) => sendJson(response, 200, report()));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  onTestFinished(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** Stand-in Twilio: a text is queued unpriced (as Twilio answers); a body `vendor-429` / `vendor-403` gets Twilio's own error. */
function startTwilioStandIn() {
  return startFakeVendor((request, response) => {
    const body = new URLSearchParams(request.body).get('Body') ?? '';
    if (body === 'vendor-429') {
      return sendJson(
        response,
        429,
        { code: 20429, message: 'Too Many Requests', status: 429 },
        { 'retry-after': '1' },
      );
    }
    if (body === 'vendor-403') return sendJson(response, 403, { code: 20003, message: 'Forbidden', status: 403 });
    sendJson(response, 201, {
      sid: `SM${String(request.url.length).padStart(32, '0')}`,
      status: 'queued',
      price: null,
      num_segments: '1',
      body,
    });
  });
}

/** Stand-in Resend: an email gets an id; a subject `vendor-429` gets Resend's own rate limit. */
function startResendStandIn() {
  let next = 0;
  return startFakeVendor((request, response) => {
    const email = JSON.parse(request.body || '{}') as { subject?: string };
    if (email.subject === 'vendor-429') {
      return sendJson(response, 429, { statusCode: 429, name: 'rate_limit_exceeded', message: 'Too many requests' });
    }
    sendJson(response, 200, { id: `email_${(next += 1)}` });
  });
}

/** The proxy with stripe-mock (through a counting relay) and the Twilio and Resend stand-ins. */
async function startVendorProxies() {
  const relay = await startRelay(inject('stripeMockUrl'));
  const twilio = await startTwilioStandIn();
  const resend = await startResendStandIn();
  const proxy = await startProxy({
    env: {
      KEYBRAKE_STRIPE_BASE_URL: relay.url,
      KEYBRAKE_TWILIO_BASE_URL: twilio.url,
      KEYBRAKE_RESEND_BASE_URL: resend.url,
      KEYBRAKE_TWILIO_SEGMENT_USD: '0.01',
      KEYBRAKE_RESEND_EMAIL_USD: '0.4',
    },
  });
  // Every vendor answers its own 429 here: Stripe's rate limit, Twilio's 20429, Resend's rate_limit_exceeded.
  const limited = await startFakeVendor((request, response) => {
    if (request.url.startsWith('/v1/')) {
      return sendJson(
        response,
        429,
        { error: { type: 'invalid_request_error', code: 'rate_limit', message: 'Too many requests' } },
        { 'stripe-should-retry': 'false' },
      );
    }
    if (request.url.includes('/Messages.json')) {
      return sendJson(response, 429, { code: 20429, message: 'Too Many Requests', status: 429 });
    }
    sendJson(response, 429, { statusCode: 429, name: 'rate_limit_exceeded', message: 'Too many requests' });
  });
  const vendor429 = await startProxy({
    apiKey: proxy.apiKey,
    env: {
      KEYBRAKE_STRIPE_BASE_URL: limited.url,
      KEYBRAKE_TWILIO_BASE_URL: limited.url,
      KEYBRAKE_RESEND_BASE_URL: limited.url,
      KEYBRAKE_TWILIO_SEGMENT_USD: '0.01',
      KEYBRAKE_RESEND_EMAIL_USD: '0.4',
    },
  });
  const witness = await startWitness(() => ({
    stripe_charges: relay.forwarded('POST /v1/payment_intents'),
    twilio_requests: twilio.received.length,
    resend_requests: resend.received.length,
    twilio_paths: twilio.received.map((request) => request.url),
    resend_authorizations: resend.received.map((request) => request.headers.authorization ?? ''),
    twilio_account_sid: proxy.secrets.TWILIO_ACCOUNT_SID,
  }));
  return {
    proxy,
    env: {
      KEYBRAKE_TEST_PROXY_URL: proxy.url,
      KEYBRAKE_TEST_ISSUER_KEY: proxy.apiKey,
      KEYBRAKE_TEST_VENDOR_429_PROXY_URL: vendor429.url,
      KEYBRAKE_TEST_WITNESS_URL: witness,
    },
  };
}

describe('issue 24: the Python package (pytest, integrations/python/tests)', () => {
  it('derive_idempotency_key matches the shared vectors; is_cap_hit, keybrake_refusal, exit codes, the Conductor decorator and the Temporal failure mapping on unit inputs', async () => {
    const { code, output } = await pytest(
      ['test_idempotency_vectors.py', 'test_refusal.py', 'test_engines.py', 'test_issue24_review.py'],
      {},
    );
    expect(code, output).toBe(0);
  });

  it("the package is typed: mypy --strict over src and the decorators' typing checks (pyproject.toml [tool.mypy])", async () => {
    const { code, output } = await run(['-m', 'mypy'], {});
    expect(code, output).toBe(0);
    expect(output).toMatch(/^Success: no issues found in \d+ source files/m);
  });

  it('the official stripe, twilio and resend Python SDKs through the proxy: happy path, cap hit, revocation, retry-replay, vendor 429, issue 26 limit refusals (stripe-mock; Twilio and Resend stand-ins)', async () => {
    const { env } = await startVendorProxies();
    const { code, output } = await pytest(['test_vendor_sdks.py', 'test_issue26_limits.py'], env);
    expect(code, output).toBe(0);
  });

  it('KeybrakeClient against the real admin API, and keybrake-exec mapping a cap hit to exit 75 (stripe-mock)', async () => {
    const { env } = await startVendorProxies();
    const { code, output } = await pytest(['test_client.py', 'test_exec.py'], env);
    expect(code, output).toBe(0);
  });
});

describe('issue 25: the Python token provider (pytest)', () => {
  it('TokenFile re-reads a projected token after a kubelet-style ..data swap; KeybrakeClient(token_provider=) sends it to the real proxy', async () => {
    const { env } = await startVendorProxies();
    const { code, output } = await pytest(['test_issue25_token_file.py'], env);
    expect(code, output).toBe(0);
  });
});
