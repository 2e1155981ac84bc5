// `pnpm run generate:vendors`: writes what is derived from core-proxy's vendor registry, after
// `tsc -b core-proxy`: the built-in vendor names the client and Temporal packages use
// (integrations/client/src/vendors.ts), and the Helm chart's vendor blocks (the generated regions
// of values.yaml and the generated entries of values.schema.json). Tests fail when they are stale.
import { readFileSync, writeFileSync } from 'node:fs';
import { format, resolveConfig } from 'prettier';
import { BUILT_IN_VENDORS } from '../core-proxy/dist/vendors/registry.js';
import { VENDOR_NAMES_FILE, vendorNamesSource } from '../core-proxy/dist/vendors/vendor-names-source.js';
import { HELM_CHART_DIR, helmSchemaSource, helmValuesSource } from '../core-proxy/dist/vendors/helm-chart-source.js';

const root = new URL('../', import.meta.url);

/** Writes `file` (from the repository root) formatted as `pnpm run format` would. */
async function write(file, text) {
  const path = new URL(file, root);
  const options = (await resolveConfig(path)) ?? {};
  writeFileSync(path, await format(text, { ...options, filepath: path.pathname }));
  console.log(`wrote ${file}`);
}

const read = (file) => readFileSync(new URL(file, root), 'utf8');

await write(VENDOR_NAMES_FILE, vendorNamesSource(BUILT_IN_VENDORS.map((vendor) => vendor.name)));
await write(`${HELM_CHART_DIR}/values.yaml`, helmValuesSource(read(`${HELM_CHART_DIR}/values.yaml`), BUILT_IN_VENDORS));
await write(
  `${HELM_CHART_DIR}/values.schema.json`,
  helmSchemaSource(read(`${HELM_CHART_DIR}/values.schema.json`), BUILT_IN_VENDORS),
);
