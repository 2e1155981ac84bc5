/**
 * Issue 20: one registry of vendors. Adding a built-in vendor is its module plus one line of
 * BUILT_IN_VENDORS, and every list of vendors is derived from that one: a scan of the sources
 * fails on a list kept by hand.
 */
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { usdToMicros } from '../src/pricing/money.js';
import { positiveNumber } from '../src/env.js';
import { BUILT_IN_VENDORS } from '../src/vendors/registry.js';
import { HELM_CHART_DIR } from '../src/vendors/helm-chart-source.js';
import { VENDOR_NAMES_FILE, vendorNamesSource } from '../src/vendors/vendor-names-source.js';
import type { VendorOptionsSpec } from '../src/vendors/vendor-options.js';
import { type VendorModule, moneyMoving, readBearer } from '../src/vendors/vendor.js';
import { json, newSecrets, sendJson, startFakeVendor, startProxy } from './helpers.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** A vendor module written as a new built-in one would be: its own knob, secret, pricing and request id. */
const LEDGER_PRICING: VendorOptionsSpec<{ readonly entryUsd: number }> = {
  defaults: { entryUsd: 0.1 },
  read: (env) => ({ entryUsd: positiveNumber(env, 'KEYBRAKE_LEDGERLY_ENTRY_USD', 0.1) }),
  environment: { KEYBRAKE_LEDGERLY_ENTRY_USD: 'price of one ledger entry (default 0.1)' },
};
const ledgerly: VendorModule = {
  name: 'ledgerly',
  defaultBaseUrl: 'https://api.ledgerly.example',
  secretNames: ['LEDGERLY_API_KEY'],
  options: LEDGER_PRICING,
  catalogue: [
    moneyMoving('POST /v2/entries', 'a ledger entry', {
      estimate: (_request, pricing) => usdToMicros(pricing.vendorOptions.get(LEDGER_PRICING).entryUsd),
    }),
  ],
  sensitiveEndpoints: [],
  readVaultKey: readBearer,
  prepareUpstream: (request, secrets) => ({
    segments: request.segments,
    headers: { authorization: `Bearer ${secrets.LEDGERLY_API_KEY}` },
  }),
  vendorRequestId: (response) => {
    const id = response.headers['ledger-request-id'];
    return typeof id === 'string' ? id : undefined;
  },
};

describe('issue 20: a new built-in vendor is one module and one registry line (fake vendor)', () => {
  it('issuance, OpenAPI, configuration and the proxy route all pick it up from the registry line', async () => {
    const vendor = await startFakeVendor((_request, response) =>
      sendJson(response, 200, { ok: true }, { 'ledger-request-id': 'lr_1' }),
    );
    const secret = `ldg_${randomBytes(12).toString('hex')}`;
    const proxy = await startProxy({
      builtInVendors: [...BUILT_IN_VENDORS, ledgerly],
      secrets: { ...newSecrets(), LEDGERLY_API_KEY: secret },
      env: { KEYBRAKE_LEDGERLY_BASE_URL: vendor.url, KEYBRAKE_LEDGERLY_ENTRY_USD: '0.4' },
    });
    // Issuance and the OpenAPI document.
    const key = await proxy.issueKey({ vendor: 'ledgerly', usd_cap: 1, allowed_endpoints: ['POST /v2/entries'] });
    const document = await json(await proxy.call('/openapi.json'));
    expect(document.components.schemas.IssueKeyRequest.properties.vendor.enum).toEqual([
      ...BUILT_IN_VENDORS.map((module) => module.name),
      'ledgerly',
    ]);
    expect(document.paths['/{vendor}/{path}']['post']['x-keybrake-pricing'].environment).toHaveProperty(
      'KEYBRAKE_LEDGERLY_ENTRY_USD',
    );
    // The route, the secret, the base URL variable and the vendor's own knob ($0.40 an entry).
    const entry = () =>
      proxy.call('/ledgerly/v2/entries', { method: 'POST', headers: { authorization: `Bearer ${key.vault_key}` } });
    expect((await entry()).status).toBe(200);
    expect((await entry()).status).toBe(200);
    const capped = await entry();
    expect(capped.status).toBe(429);
    expect(capped.headers.get('x-keybrake-cap-hit')).toBe('true');
    expect(vendor.received).toHaveLength(2);
    expect(vendor.received[0]?.headers.authorization).toBe(`Bearer ${secret}`);
    const calls = (await proxy.admin('GET', `/vault/keys/${key.key_id}/calls`)).body.calls;
    expect(calls.map((call: { cost_usd: number }) => call.cost_usd)).toEqual([0.4, 0.4, 0]);
    expect(calls[0].vendor_request_id).toBe('lr_1');
    // The catalogue entry is sensitive, as every built-in one is.
    const tainted = await proxy.call('/ledgerly/v2/entries', {
      method: 'POST',
      headers: { authorization: `Bearer ${key.vault_key}`, 'x-keybrake-provenance': 'untrusted' },
    });
    expect((await json(tainted)).error.code).toBe('tainted_request_refused');
  });

  it('without the registry line the proxy does not know it', async () => {
    const proxy = await startProxy({
      secrets: { ...newSecrets(), LEDGERLY_API_KEY: `ldg_${randomBytes(12).toString('hex')}` },
    });
    const refused = await proxy.admin('POST', '/vault/keys', {
      vendor: 'ledgerly',
      usd_cap: 1,
      allowed_endpoints: ['POST /v2/entries'],
      expires_in: '1h',
    });
    expect(refused.status).toBe(400);
    expect((await proxy.call('/ledgerly/v2/entries', { method: 'POST' })).status).toBe(404);
  });
});

/**
 * Files that may name the built-in vendors together: the registry itself, what is generated from
 * it, and this test (its detector's samples).
 */
const SOURCES_OF_TRUTH = new Set([
  'core-proxy/src/vendors/registry.ts',
  VENDOR_NAMES_FILE,
  `${HELM_CHART_DIR}/values.yaml`,
  `${HELM_CHART_DIR}/values.schema.json`,
  'core-proxy/test/issue-20-vendor-registry.test.ts',
]);

/** Not scanned: installed and built files. The Helm chart is scanned: its vendor blocks are generated. */
const NOT_SCANNED = /(^|\/)(node_modules|dist|\.git)(\/|$)/;

/** What a hand-kept list of vendor names looks like in code, in prose, and as secret names. */
function handKeptLists(text: string, vendors: readonly VendorModule[]): string[] {
  const names = vendors.map((vendor) => vendor.name).join('|');
  const patterns = [
    // ['stripe', 'twilio', ...]  or  'stripe' | 'twilio' (two names as a call's arguments are not a list)
    new RegExp(`\\[\\s*(['"\`])(${names})\\1\\s*,\\s*(['"\`])(?!\\2\\3)(${names})\\3`, 'g'),
    new RegExp(`(['"\`])(${names})\\1\\s*\\|\\s*(['"\`])(?!\\2\\3)(${names})\\3`, 'g'),
    // [stripe, twilio, ...] of modules
    new RegExp(`\\[\\s*(${names})\\s*,\\s*(?!\\1\\b)(${names})\\b`, 'g'),
    // 'stripe, twilio or resend' as a whole string or YAML value (not a sentence naming their SDKs)
    new RegExp(
      `(?:['"\`]|: )(${names})(?:(?:,\\s*|\\s+or\\s+|\\s+and\\s+|\\s*/\\s*)(?!\\1\\b)(?:${names}))+(?=['"\`]|\\s*$)`,
      'gm',
    ),
  ];
  const found = patterns.flatMap((pattern) => [...text.matchAll(pattern)].map((match) => match[0]));
  // Two vendors' secret names close together: a per-vendor table of secrets.
  const secretAt = vendors.flatMap((vendor) =>
    vendor.secretNames.flatMap((secret) =>
      [...text.matchAll(new RegExp(`\\b${secret}\\b`, 'g'))].map((match) => ({ at: match.index, vendor, secret })),
    ),
  );
  secretAt.sort((x, y) => x.at - y.at);
  for (let i = 1; i < secretAt.length; i += 1) {
    const [previous, next] = [secretAt[i - 1]!, secretAt[i]!];
    if (previous.vendor !== next.vendor && next.at - previous.at < 200)
      found.push(`${previous.secret} … ${next.secret}`);
  }
  return found;
}

function* sourceFiles(folder: string): Generator<string> {
  for (const entry of readdirSync(folder)) {
    const path = join(folder, entry);
    const name = relative(ROOT, path);
    if (NOT_SCANNED.test(name)) continue;
    if (statSync(path).isDirectory()) yield* sourceFiles(path);
    else if (/\.(ts|mts|mjs|js|sh|ya?ml|json|py|tpl)$/.test(entry) && !entry.endsWith('lock.yaml')) yield name;
  }
}

describe('issue 20: every list of vendors is derived from the registry', () => {
  it('the detector finds the shapes a hand-kept list takes', () => {
    const samples = [
      "readonly vendor: 'stripe' | 'twilio' | 'resend';",
      "new Set(['twilio', 'stripe'])",
      "vendor: { enum: ['stripe', 'twilio', 'resend'] },",
      '[stripe, twilio, resend].map((vendor) => [vendor.name, vendor])',
      "param('vendor', undefined, 'stripe, twilio or resend')",
      'description: stripe, twilio or resend',
      'STRIPE_SECRET_KEY: randomSecret(), TWILIO_AUTH_TOKEN: randomSecret(),',
    ];
    for (const sample of samples) expect(handKeptLists(sample, BUILT_IN_VENDORS), sample).not.toEqual([]);
    for (const fine of [
      "vendor: 'stripe',",
      "new VendorMismatchError('stripe', 'resend')",
      'github.com/stripe/stripe-mock',
      'Stripe, Twilio and Resend bill',
      '# the official stripe, twilio and resend SDKs',
    ]) {
      expect(handKeptLists(fine, BUILT_IN_VENDORS), fine).toEqual([]);
    }
  });

  it('no source file of the repository keeps a list of the built-in vendors by hand', () => {
    const offenders: string[] = [];
    for (const top of ['core-proxy', 'integrations', 'e2e', 'bench', 'templates', 'scripts']) {
      for (const file of sourceFiles(join(ROOT, top))) {
        if (SOURCES_OF_TRUTH.has(file)) continue;
        for (const list of handKeptLists(readFileSync(join(ROOT, file), 'utf8'), BUILT_IN_VENDORS)) {
          offenders.push(`${file}: ${list.replace(/\s+/g, ' ')}`);
        }
      }
    }
    expect(offenders, 'derive these from BUILT_IN_VENDORS (core-proxy/src/vendors/registry.ts)').toEqual([]);
  });

  it(`${VENDOR_NAMES_FILE} is generated from the registry (pnpm run generate:vendors)`, () => {
    expect(readFileSync(join(ROOT, VENDOR_NAMES_FILE), 'utf8')).toBe(
      vendorNamesSource(BUILT_IN_VENDORS.map((vendor) => vendor.name)),
    );
  });

  it('every built-in vendor has test secrets from its module, and the test helpers cover them all', () => {
    const secrets = newSecrets();
    expect(Object.keys(secrets).sort()).toEqual(BUILT_IN_VENDORS.flatMap((vendor) => vendor.secretNames).sort());
    for (const vendor of BUILT_IN_VENDORS) {
      for (const name of vendor.secretNames)
        expect(secrets[name]).toMatch(new RegExp(`^${vendor.testSecretPrefixes?.[name] ?? ''}[0-9a-f]{32}$`));
    }
  });
});
