import { cpSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BUILT_IN_VENDORS } from '../../../core-proxy/src/vendors/registry.js';
import {
  ChartVendorError,
  chartVendors,
  helmSchemaSource,
  helmValuesSource,
} from '../../../core-proxy/src/vendors/helm-chart-source.js';
import type { VendorModule } from '../../../core-proxy/src/vendors/vendor.js';
import { CHART_DIR, KUBE_VERSION, helm, one, parseManifests, secretData } from './chart.js';

/** A vendor that is not built in: only its module and a registry line would be written for it. */
const acmePay: VendorModule = {
  ...BUILT_IN_VENDORS[0]!,
  name: 'acme-pay',
  defaultBaseUrl: 'https://api.acme-pay.example',
  secretNames: ['ACME_PAY_API_KEY', 'ACME_PAY_WEBHOOK_SIGNING_SECRET'],
};

/** A copy of the chart whose generated parts are regenerated for `vendors`, as `pnpm run generate:vendors` would. */
function chartFor(vendors: readonly VendorModule[]): string {
  const dir = join(mkdtempSync(join(tmpdir(), 'keybrake-chart-vendors-')), 'keybrake');
  cpSync(CHART_DIR, dir, { recursive: true });
  for (const [file, generate] of [
    ['values.yaml', helmValuesSource],
    ['values.schema.json', helmSchemaSource],
  ] as const) {
    writeFileSync(join(dir, file), generate(readFileSync(join(dir, file), 'utf8'), vendors));
  }
  return dir;
}

const template = (chart: string, ...args: string[]) =>
  helm(['template', 'keybrake', chart, '--namespace', 'keybrake', '--kube-version', KUBE_VERSION, ...args]);

describe('issue 20: the Helm chart follows the vendor registry with no chart edit', () => {
  it('no template names a built-in vendor or one of their secrets', () => {
    const dir = join(CHART_DIR, 'templates');
    const words = BUILT_IN_VENDORS.flatMap((vendor) => [vendor.name, ...vendor.secretNames]);
    for (const file of readdirSync(dir)) {
      const text = readFileSync(join(dir, file), 'utf8').toLowerCase();
      for (const word of words) expect(text.includes(word.toLowerCase()), `${file} names ${word}`).toBe(false);
    }
  });

  it('a vendor added to the registry gets its values block, schema, Secret keys, NAME_FILE mounts and base URL', async () => {
    const chart = chartFor([...BUILT_IN_VENDORS, acmePay]);
    // Only the generated files differ from the committed chart: no template was touched.
    for (const file of readdirSync(join(chart, 'templates'))) {
      expect(readFileSync(join(chart, 'templates', file), 'utf8'), file).toBe(
        readFileSync(join(CHART_DIR, 'templates', file), 'utf8'),
      );
    }
    const apiKey = 'acme_live_0123456789';
    const signing = 'whsec_abcdef';
    const output = await template(
      chart,
      '--set',
      `vendors.acme-pay.enabled=true,vendors.acme-pay.apiKey=${apiKey},vendors.acme-pay.webhookSigningSecret=${signing}`,
      '--set',
      'config.acmePayBaseUrl=http://acme.internal:8443',
    );
    expect(output.stderr).toBe('');
    const manifests = parseManifests(output.stdout);
    expect(secretData(one(manifests, 'Secret', 'keybrake-vendors'))).toEqual({
      ACME_PAY_API_KEY: apiKey,
      ACME_PAY_WEBHOOK_SIGNING_SECRET: signing,
    });
    expect(one(manifests, 'ConfigMap', 'keybrake').data.KEYBRAKE_ACME_PAY_BASE_URL).toBe('http://acme.internal:8443');
    const pod = one(manifests, 'Deployment').spec.template.spec;
    const env = Object.fromEntries(pod.containers[0].env.map((e: any) => [e.name, e.value]));
    expect(env.ACME_PAY_API_KEY_FILE).toBe('/etc/keybrake/secrets/ACME_PAY_API_KEY');
    expect(env.ACME_PAY_WEBHOOK_SIGNING_SECRET_FILE).toBe('/etc/keybrake/secrets/ACME_PAY_WEBHOOK_SIGNING_SECRET');
    const items = pod.volumes
      .find((v: any) => v.name === 'secrets')
      .projected.sources.filter((s: any) => s.secret?.name === 'keybrake-vendors')
      .flatMap((s: any) => s.secret.items.map((i: any) => i.key));
    expect(items).toEqual(['ACME_PAY_API_KEY', 'ACME_PAY_WEBHOOK_SIGNING_SECRET']);

    // Its schema refuses a typo, and the chart refuses it enabled without its secrets.
    const typo = await template(chart, '--set', 'vendors.acme-pay.apiKee=x');
    expect(typo.stderr).toMatch(/'\/vendors\/acme-pay': additional properties 'apiKee' not allowed/);
    const missing = await template(chart, '--set', `vendors.acme-pay.enabled=true,vendors.acme-pay.apiKey=${apiKey}`);
    expect(missing.stderr).toContain(
      'vendors.acme-pay.enabled: set vendors.acme-pay.apiKey and vendors.acme-pay.webhookSigningSecret (e.g. --set-file) or vendors.existingSecret.',
    );
    // The committed chart does not know it.
    const unknown = await template(CHART_DIR, '--set', 'vendors.acme-pay.enabled=true');
    expect(unknown.stderr).toMatch(/'\/vendors': additional properties 'acme-pay' not allowed/);
  });

  it('a vendor removed from the registry leaves the chart with it', async () => {
    const [first, ...rest] = BUILT_IN_VENDORS;
    const chart = chartFor(rest);
    const output = await template(chart, '--set', `vendors.${first!.name}.enabled=true`);
    expect(output.stderr).toMatch(new RegExp(`'/vendors': additional properties '${first!.name}' not allowed`));
  });

  it('a secret name the templates could not derive stops the generator, naming the vendor and secret', () => {
    const bad = { ...acmePay, secretNames: ['ACME_PAY_KEY2'] };
    expect(() => chartVendors([bad])).toThrow(ChartVendorError);
    expect(() => chartVendors([bad])).toThrow(/acme-pay: the secret ACME_PAY_KEY2 must be named ACME_PAY_<WORDS>/);
    expect(() => chartVendors([{ ...acmePay, secretNames: ['OTHER_API_KEY'] }])).toThrow(/OTHER_API_KEY/);
  });
});
