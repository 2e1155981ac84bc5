/**
 * The built-in vendors' parts of the Helm chart (`templates/kubernetes/keybrake`): the `vendors`
 * blocks and `config.<vendor>BaseUrl` settings of values.yaml and their schema. The chart's
 * templates name no vendor: they range over `.Values.vendors` and derive every Secret key,
 * `NAME_FILE` variable and `KEYBRAKE_<NAME>_BASE_URL` from a block's name and fields, so these
 * generated parts are all a new vendor needs. `pnpm run generate:vendors` writes them from the
 * registry; a test fails when they are out of date.
 */
import { baseUrlVariable } from './registry.js';
import type { VendorModule } from './vendor.js';

/** The chart, from the repository root. */
export const HELM_CHART_DIR = 'templates/kubernetes/keybrake';

/** What marks a generated part: on each generated schema entry, and around each values.yaml region. */
export const GENERATED_NOTE = 'Generated from the vendor registry by `pnpm run generate:vendors`: do not edit.';

/** One secret of a vendor in the chart: its values field and the Secret key / variable it fills. */
export interface ChartVendorSecret {
  /** The field of `vendors.<name>` (`secretKey`). */
  readonly field: string;
  /** The Secret key, and the variable the proxy reads as `<env>_FILE` (`STRIPE_SECRET_KEY`). */
  readonly env: string;
}

/** One built-in vendor as the chart sees it. */
export interface ChartVendor {
  readonly name: string;
  /** `config.<configKey>`: the vendor's base URL (`stripeBaseUrl`, `acmePayBaseUrl`). */
  readonly configKey: string;
  readonly baseUrlEnv: string;
  readonly defaultBaseUrl: string;
  readonly secrets: readonly ChartVendorSecret[];
}

/** A vendor the chart cannot derive its names for. */
export class ChartVendorError extends Error {
  override readonly name = 'ChartVendorError';
}

/**
 * The chart's view of each vendor. The templates compute `env` back from the block's name and
 * field (`<name | upper | "-" to "_">_<field | snakecase | upper>`), so a secret must be named
 * `<VENDOR>_<WORDS>` with letter-only words: Sprig's `snakecase` splits digits unpredictably.
 * @throws ChartVendorError for a secret the templates could not derive.
 */
export function chartVendors(vendors: readonly VendorModule[]): ChartVendor[] {
  return vendors.map((vendor) => {
    const prefix = `${vendor.name.toUpperCase().replace(/-/g, '_')}_`;
    const secrets = vendor.secretNames.map((env) => {
      const rest = env.startsWith(prefix) ? env.slice(prefix.length) : '';
      if (!/^[A-Z]+(_[A-Z]+)*$/.test(rest)) {
        throw new ChartVendorError(
          `${vendor.name}: the secret ${env} must be named ${prefix}<WORDS> (letters and "_" only) for the Helm chart to derive it from its values field.`,
        );
      }
      const field = rest
        .toLowerCase()
        .split('_')
        .map((word, i) => (i === 0 ? word : word[0]!.toUpperCase() + word.slice(1)))
        .join('');
      if (field === 'enabled') throw new ChartVendorError(`${vendor.name}: ${env} would be the field "enabled".`);
      return { field, env };
    });
    return {
      name: vendor.name,
      configKey: `${vendor.name.replace(/-(.)/g, (_, c: string) => c.toUpperCase())}BaseUrl`,
      baseUrlEnv: baseUrlVariable(vendor.name),
      defaultBaseUrl: vendor.defaultBaseUrl,
      secrets,
    };
  });
}

const BEGIN = '# >>> ';
const END = '# <<< ';

/** The generated regions of values.yaml, by id, as lines indented under their parent. */
function valuesRegions(vendors: readonly ChartVendor[]): Record<string, string[]> {
  return {
    'vendor base URLs': vendors.flatMap((vendor) => [
      `# -- ${vendor.baseUrlEnv}; empty: ${vendor.defaultBaseUrl}.`,
      `${vendor.configKey}: ''`,
    ]),
    'vendor secrets': vendors.flatMap((vendor) => [
      `${vendor.name}:`,
      '  enabled: false',
      ...vendor.secrets.flatMap((secret) => [
        `  # -- ${secret.env}, when the chart makes the Secret (prefer --set-file or existingSecret).`,
        `  ${secret.field}: ''`,
      ]),
    ]),
  };
}

/**
 * values.yaml with its generated regions rewritten: the lines between `# >>> <id>` and
 * `# <<< <id>` (same indentation), for the ids `vendor base URLs` and `vendor secrets`.
 * @throws ChartVendorError when a region's markers are missing.
 */
export function helmValuesSource(values: string, vendors: readonly VendorModule[]): string {
  let text = values;
  for (const [id, lines] of Object.entries(valuesRegions(chartVendors(vendors)))) {
    const region = new RegExp(`^( *)${escape(BEGIN + id)}.*\\n[\\s\\S]*?^\\1${escape(END + id)}.*$`, 'm');
    const match = region.exec(text);
    if (!match) throw new ChartVendorError(`values.yaml has no "${BEGIN}${id}" … "${END}${id}" region.`);
    const indent = match[1]!;
    const body = [`${BEGIN}${id}. ${GENERATED_NOTE}`, ...lines, `${END}${id}`].map((line) => indent + line);
    text = text.slice(0, match.index) + body.join('\n') + text.slice(match.index + match[0].length);
  }
  return text;
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

type Schema = { properties?: Record<string, Schema>; [key: string]: unknown };

/** `properties` with every generated entry replaced by `generated`, where the first one was (else at the end). */
function withGenerated(properties: Record<string, Schema>, generated: Record<string, Schema>): Record<string, Schema> {
  const result: Record<string, Schema> = {};
  let placed = false;
  for (const [key, value] of Object.entries(properties)) {
    if (value.$comment === GENERATED_NOTE) {
      if (!placed) Object.assign(result, generated);
      placed = true;
    } else result[key] = value;
  }
  return placed ? result : { ...result, ...generated };
}

/**
 * values.schema.json (as JSON text, 2-space indented) with its generated entries rewritten: the
 * `config` base URLs and the `vendors` blocks, each marked by `"$comment": GENERATED_NOTE`.
 */
export function helmSchemaSource(schemaText: string, vendors: readonly VendorModule[]): string {
  const schema = JSON.parse(schemaText) as Schema;
  const config = schema.properties?.config;
  const vendorsSchema = schema.properties?.vendors;
  if (!config?.properties || !vendorsSchema?.properties) {
    throw new ChartVendorError(
      'values.schema.json has no properties.config.properties or properties.vendors.properties.',
    );
  }
  const chart = chartVendors(vendors);
  config.properties = withGenerated(
    config.properties,
    Object.fromEntries(
      chart.map((vendor) => [
        vendor.configKey,
        {
          $comment: GENERATED_NOTE,
          type: 'string',
          pattern: '^(|https?://.+)$',
          description: `${vendor.baseUrlEnv}; empty: ${vendor.defaultBaseUrl}.`,
        },
      ]),
    ),
  );
  vendorsSchema.properties = withGenerated(
    vendorsSchema.properties,
    Object.fromEntries(
      chart.map((vendor) => [
        vendor.name,
        {
          $comment: GENERATED_NOTE,
          type: 'object',
          additionalProperties: false,
          properties: {
            enabled: { type: 'boolean' },
            ...Object.fromEntries(
              vendor.secrets.map((secret) => [secret.field, { type: 'string', description: secret.env }]),
            ),
          },
        },
      ]),
    ),
  );
  return `${JSON.stringify(schema, null, 2)}\n`;
}
