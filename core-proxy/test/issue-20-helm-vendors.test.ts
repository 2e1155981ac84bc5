import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { BUILT_IN_VENDORS } from '../src/vendors/registry.js';

const CHART = fileURLToPath(new URL('../../templates/kubernetes/keybrake/', import.meta.url));
const read = (path: string) => readFileSync(CHART + path, 'utf8');

/**
 * The Helm chart is the one place that keeps a block per built-in vendor (a Helm values file cannot
 * import the registry): the vendor-list scan skips it, so this test holds it to the registry
 * instead. Adding a vendor without its chart block, or leaving a removed one, fails here.
 */
describe('issue 20: the Helm chart has exactly the registry’s vendors', () => {
  const values = parse(read('values.yaml')) as {
    vendors: Record<string, unknown>;
    config: Record<string, unknown>;
  };
  const schema = JSON.parse(read('values.schema.json')) as {
    properties: { vendors: { properties: Record<string, unknown> }; config: { properties: Record<string, unknown> } };
  };
  const helpers = read('templates/_helpers.tpl');
  const secrets = read('templates/secrets.yaml');
  const configMap = read('templates/configmap.yaml');
  const names = BUILT_IN_VENDORS.map((vendor) => vendor.name);

  it('values.yaml and its schema have one vendors block per registry vendor, and no other', () => {
    const blocks = Object.keys(values.vendors).filter((key) => key !== 'existingSecret');
    expect(blocks.sort()).toEqual([...names].sort());
    const schemaBlocks = Object.keys(schema.properties.vendors.properties).filter((key) => key !== 'existingSecret');
    expect(schemaBlocks.sort()).toEqual([...names].sort());
  });

  it('every vendor has a base URL setting in values, schema and the ConfigMap, and no other vendor does', () => {
    const baseUrls = (keys: string[]) => keys.filter((key) => key.endsWith('BaseUrl')).sort();
    const expected = names.map((name) => `${name.replace(/-(.)/g, (_, c: string) => c.toUpperCase())}BaseUrl`).sort();
    expect(baseUrls(Object.keys(values.config))).toEqual(expected);
    expect(baseUrls(Object.keys(schema.properties.config.properties))).toEqual(expected);
    const inConfigMap = [...configMap.matchAll(/KEYBRAKE_([A-Z0-9_]+)_BASE_URL/g)].map((match) => match[1]).sort();
    expect(inConfigMap).toEqual(names.map((name) => name.toUpperCase().replace(/-/g, '_')).sort());
  });

  it('every secret a vendor needs is mounted by the chart and written into its Secret', () => {
    for (const vendor of BUILT_IN_VENDORS) {
      for (const secret of vendor.secretNames) {
        expect(helpers, `${vendor.name}: ${secret} in keybrake.vendorKeys`).toContain(`"${secret}"`);
        expect(secrets, `${vendor.name}: ${secret} in secrets.yaml`).toMatch(new RegExp(`^\\s+${secret}: `, 'm'));
      }
    }
    const allSecrets = BUILT_IN_VENDORS.flatMap((vendor) => vendor.secretNames).sort();
    const written = [...secrets.matchAll(/^\s+([A-Z][A-Z0-9_]+): \{\{ \.[a-zA-Z]+ \| b64enc/gm)]
      .map((m) => m[1])
      .sort();
    expect(written).toEqual(allSecrets);
  });
});
