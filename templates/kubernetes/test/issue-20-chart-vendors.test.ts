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

/** A KEYBRAKE_VENDORS_FILE with one vendor, whose secret is ACME_SMS_TOKEN. */
const DECLARED_FILE = `vendors:
  - name: acme-sms
    base_url: https://api.acme-sms.example
    vault_key: { scheme: bearer }
    secret: { env: ACME_SMS_TOKEN, scheme: header, header: X-Acme-Token }
    costs: [{ endpoint: POST /v1/sms, usd: 0.05 }]
`;

describe('issue 20: declared vendors in the Helm chart (KEYBRAKE_VENDORS_FILE from a ConfigMap, secrets from a Secret)', () => {
  function valuesFile(values: unknown): string {
    const file = join(mkdtempSync(join(tmpdir(), 'keybrake-declared-')), 'values.yaml');
    writeFileSync(file, JSON.stringify(values));
    return file;
  }

  it('the file in a ConfigMap the chart makes, mounted where KEYBRAKE_VENDORS_FILE points; its secrets mounted from your Secret', async () => {
    const output = await template(
      CHART_DIR,
      '--values',
      valuesFile({
        declaredVendors: { file: DECLARED_FILE, existingSecret: 'acme-secrets', secretKeys: ['ACME_SMS_TOKEN'] },
      }),
    );
    expect(output.stderr).toBe('');
    const manifests = parseManifests(output.stdout);
    expect(one(manifests, 'ConfigMap', 'keybrake-vendors-file').data).toEqual({ 'vendors.yaml': DECLARED_FILE });
    const config = one(manifests, 'ConfigMap', 'keybrake').data;
    expect(config.KEYBRAKE_VENDORS_FILE).toBe('/etc/keybrake/vendors/vendors.yaml');
    const pod = one(manifests, 'Deployment').spec.template.spec;
    const container = pod.containers[0];
    const mount = container.volumeMounts.find((m: any) => m.name === 'vendors-file');
    expect(mount).toEqual({ name: 'vendors-file', mountPath: '/etc/keybrake/vendors', readOnly: true });
    expect(pod.volumes.find((v: any) => v.name === 'vendors-file').configMap).toEqual({
      name: 'keybrake-vendors-file',
      items: [{ key: 'vendors.yaml', path: 'vendors.yaml' }],
    });
    const env = Object.fromEntries(container.env.map((e: any) => [e.name, e.value]));
    expect(env.ACME_SMS_TOKEN_FILE).toBe('/etc/keybrake/secrets/ACME_SMS_TOKEN');
    const sources = pod.volumes.find((v: any) => v.name === 'secrets').projected.sources;
    expect(sources).toContainEqual({
      secret: { name: 'acme-secrets', items: [{ key: 'ACME_SMS_TOKEN', path: 'ACME_SMS_TOKEN' }] },
    });
    // The file changing rolls the pods (the checksum covers the file's ConfigMap).
    const changed = parseManifests(
      (
        await template(
          CHART_DIR,
          '--values',
          valuesFile({
            declaredVendors: {
              file: DECLARED_FILE.replace('0.05', '0.06'),
              existingSecret: 'acme-secrets',
              secretKeys: ['ACME_SMS_TOKEN'],
            },
          }),
        )
      ).stdout,
    );
    const checksum = (m: typeof manifests) =>
      one(m, 'Deployment').spec.template.metadata.annotations['checksum/config'] as string;
    expect(checksum(changed)).not.toBe(checksum(manifests));
  });

  it('or a ConfigMap you made', async () => {
    const output = await template(
      CHART_DIR,
      '--set',
      'declaredVendors.existingConfigMap=my-vendors,declaredVendors.existingSecret=s,declaredVendors.secretKeys[0]=ACME_SMS_TOKEN',
    );
    expect(output.stderr).toBe('');
    const manifests = parseManifests(output.stdout);
    expect(manifests.filter((m) => m.kind === 'ConfigMap').map((m) => m.metadata.name)).not.toContain(
      'keybrake-vendors-file',
    );
    expect(one(manifests, 'ConfigMap', 'keybrake').data.KEYBRAKE_VENDORS_FILE).toBe(
      '/etc/keybrake/vendors/vendors.yaml',
    );
    const pod = one(manifests, 'Deployment').spec.template.spec;
    expect(pod.volumes.find((v: any) => v.name === 'vendors-file').configMap.name).toBe('my-vendors');
  });

  it('nothing of it without declaredVendors', async () => {
    const manifests = parseManifests((await template(CHART_DIR)).stdout);
    expect(one(manifests, 'ConfigMap', 'keybrake').data.KEYBRAKE_VENDORS_FILE).toBeUndefined();
    const pod = one(manifests, 'Deployment').spec.template.spec;
    expect(pod.volumes.map((v: any) => v.name)).not.toContain('vendors-file');
  });

  it.each([
    [
      'both a file and a ConfigMap',
      'declaredVendors.file=vendors: [],declaredVendors.existingConfigMap=x',
      'set file or existingConfigMap, not both',
    ],
    [
      'secret keys with no Secret',
      'declaredVendors.file=vendors: [],declaredVendors.secretKeys[0]=A',
      'set declaredVendors.existingSecret',
    ],
    [
      'a Secret with no keys',
      'declaredVendors.file=vendors: [],declaredVendors.existingSecret=s',
      'declaredVendors.secretKeys',
    ],
    [
      'secrets with no vendors',
      'declaredVendors.existingSecret=s,declaredVendors.secretKeys[0]=A',
      'set declaredVendors.file or declaredVendors.existingConfigMap',
    ],
    [
      'a key the chart already mounts',
      'declaredVendors.file=vendors: [],declaredVendors.existingSecret=s,declaredVendors.secretKeys[0]=KEYBRAKE_API_KEYS',
      'KEYBRAKE_API_KEYS is already a secret of the chart',
    ],
    ['a path instead of the file', 'declaredVendors.file=./vendors.yaml', "'/declaredVendors/file'"],
    ['a key that is no variable name', 'declaredVendors.secretKeys[0]=not-a-name', "'/declaredVendors/secretKeys/0'"],
  ])('refuses %s', async (_what, set, message) => {
    const output = await template(CHART_DIR, '--set', set);
    expect(output.code).not.toBe(0);
    expect(output.stderr).toContain(message);
  });

  it('refuses a declared secret named like an enabled built-in vendor’s', async () => {
    const builtIn = chartVendors(BUILT_IN_VENDORS)[0]!;
    const output = await template(
      CHART_DIR,
      '--set',
      `vendors.existingSecret=v,vendors.${builtIn.name}.enabled=true,declaredVendors.file=vendors: [],declaredVendors.existingSecret=s,declaredVendors.secretKeys[0]=${builtIn.secrets[0]!.env}`,
    );
    expect(output.stderr).toContain(`${builtIn.secrets[0]!.env} is already a secret of the chart`);
  });
});
