import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { BUILT_IN_VENDORS } from '../src/vendors/registry.js';
import { HELM_CHART_DIR, chartVendors, helmSchemaSource, helmValuesSource } from '../src/vendors/helm-chart-source.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const read = (file: string) => readFileSync(`${ROOT}${HELM_CHART_DIR}/${file}`, 'utf8');

/**
 * The Helm chart's vendor blocks are generated from the registry (`pnpm run generate:vendors`) and
 * its templates range over them (templates/kubernetes/test/issue-20-chart-vendors.test.ts shows a
 * new vendor rendered with no chart edit). Here: the committed generated parts are current.
 */
describe('issue 20: the Helm chart’s vendor blocks are generated from the registry', () => {
  it('values.yaml’s generated regions are what `pnpm run generate:vendors` writes', () => {
    const values = read('values.yaml');
    expect(values).toBe(helmValuesSource(values, BUILT_IN_VENDORS));
    const parsed = parse(values) as { vendors: Record<string, unknown>; config: Record<string, unknown> };
    const chart = chartVendors(BUILT_IN_VENDORS);
    expect(Object.keys(parsed.vendors).filter((key) => key !== 'existingSecret')).toEqual(chart.map((v) => v.name));
    for (const vendor of chart) {
      expect(parsed.config[vendor.configKey]).toBe('');
      expect(Object.keys(parsed.vendors[vendor.name] as object)).toEqual([
        'enabled',
        ...vendor.secrets.map((secret) => secret.field),
      ]);
    }
  });

  it('values.schema.json’s generated entries are what `pnpm run generate:vendors` writes', () => {
    const schema = read('values.schema.json');
    expect(JSON.parse(schema)).toEqual(JSON.parse(helmSchemaSource(schema, BUILT_IN_VENDORS)));
  });

  it('every built-in secret maps to a values field the templates turn back into its name', () => {
    for (const vendor of chartVendors(BUILT_IN_VENDORS)) {
      for (const { field, env } of vendor.secrets) {
        // What the templates compute: <name | upper | "-"→"_">_<field | snakecase | upper>.
        const snake = field.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase();
        expect(`${vendor.name.toUpperCase().replace(/-/g, '_')}_${snake}`).toBe(env);
      }
    }
    expect(chartVendors(BUILT_IN_VENDORS).flatMap((v) => v.secrets.map((s) => s.env))).toEqual(
      BUILT_IN_VENDORS.flatMap((v) => v.secretNames),
    );
  });
});
