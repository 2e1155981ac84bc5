import { readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
import { ConfigError, type Env, readSecret } from '../env.js';
import { type EndpointPattern, parseEndpointPattern } from '../keys/allowlist.js';
import {
  type DeclaredCost,
  type SecretInjection,
  type VaultKeyPresentation,
  type VendorDeclaration,
  declaredVendor,
} from './declared-vendor.js';
import { RESERVED_VENDOR_NAMES, VENDOR_NAME } from './registry.js';
import type { VendorModule } from './vendor.js';

/**
 * A `KEYBRAKE_VENDORS_FILE` the proxy cannot use: the server does not start. The message names
 * the file and the field (`vendors.yaml: vendors[1].secret.env: ACME_KEY is not set`).
 */
export class VendorsFileError extends ConfigError {
  constructor(
    /** The file, as `KEYBRAKE_VENDORS_FILE` names it. */
    readonly file: string,
    /** The field at fault, e.g. `vendors[1].secret.env` (empty: the whole file). */
    readonly field: string,
    /** What is wrong with it. */
    readonly problem: string,
  ) {
    super(`${file}: ${field === '' ? '' : `${field}: `}${problem}`);
  }
}

/** An HTTP header name (RFC 9110 token). */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$/;
/** An environment variable name. */
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
/** A dotted path into a JSON object: `amount`, `usage.cost_usd`. */
const FIELD_PATH = /^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*){0,7}$/;
/** Headers the proxy sets or drops itself: a declared vendor cannot read the key from or inject into them. */
const PROXY_HEADERS = new Set([
  'host',
  'content-length',
  'content-type',
  'content-encoding',
  'transfer-encoding',
  'connection',
  'idempotency-key',
  'cookie',
]);

/** A field of the file being read, with its path for errors. */
class Field {
  constructor(
    private readonly file: string,
    readonly path: string,
    readonly value: unknown,
  ) {}

  fail(problem: string): never {
    throw new VendorsFileError(this.file, this.path, problem);
  }

  /** A member of this object (its value `undefined` when absent). */
  member(name: string): Field {
    return new Field(this.file, this.path === '' ? name : `${this.path}.${name}`, this.object()[name]);
  }

  /** The object's members, refusing any not listed. */
  object(allowed?: readonly string[]): Record<string, unknown> {
    if (this.value === null || typeof this.value !== 'object' || Array.isArray(this.value)) {
      this.fail('must be a mapping');
    }
    const fields = this.value as Record<string, unknown>;
    const unknown = allowed && Object.keys(fields).find((key) => !allowed.includes(key));
    if (allowed && unknown !== undefined) {
      const where = this.path === '' ? unknown : `${this.path}.${unknown}`;
      throw new VendorsFileError(this.file, where, `unknown field (expected one of: ${allowed.join(', ')})`);
    }
    return fields;
  }

  items(): Field[] {
    if (!Array.isArray(this.value)) this.fail('must be a list');
    return (this.value as unknown[]).map((item, i) => new Field(this.file, `${this.path}[${i}]`, item));
  }

  present(): boolean {
    return this.value !== undefined && this.value !== null;
  }

  string(pattern?: RegExp, what = 'a string'): string {
    if (typeof this.value !== 'string' || this.value.trim() === '') this.fail(`must be ${what}`);
    const text = (this.value as string).trim();
    if (pattern && !pattern.test(text)) this.fail(`"${text.slice(0, 80)}" is not ${what}`);
    return text;
  }

  oneOf<T extends string>(choices: readonly T[]): T {
    const text = this.string();
    if (!(choices as readonly string[]).includes(text)) this.fail(`must be one of: ${choices.join(', ')}`);
    return text as T;
  }

  usd(options: { positive: boolean }): number {
    const value = this.value;
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || (options.positive && value === 0)) {
      this.fail(options.positive ? 'must be a number > 0 (USD)' : 'must be a number >= 0 (USD)');
    }
    if ((value as number) > 1e9) this.fail('must be at most 1e9 (USD)');
    return value as number;
  }

  endpoint(): EndpointPattern {
    const text = this.string(undefined, 'an endpoint such as "POST /v1/messages"');
    try {
      return parseEndpointPattern(text);
    } catch (error) {
      return this.fail((error as Error).message.replace(/^allowed_endpoints entry /, ''));
    }
  }
}

function baseUrl(field: Field): string {
  const text = field.string(undefined, 'an http(s) URL');
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return field.fail(`"${text.slice(0, 80)}" is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') field.fail(`"${text.slice(0, 80)}" is not an http(s) URL`);
  if (url.search !== '' || url.hash !== '' || url.username !== '' || url.password !== '') {
    field.fail('must have no query, fragment or credentials (the secret goes in `secret`)');
  }
  return text.replace(/\/+$/, '');
}

function headerName(field: Field): string {
  const name = field.string(HEADER_NAME, 'an HTTP header name');
  const lower = name.toLowerCase();
  if (PROXY_HEADERS.has(lower) || lower === 'authorization' || lower.startsWith('x-keybrake-')) {
    field.fail(`${name} is a header the proxy handles itself (use scheme bearer or basic for Authorization)`);
  }
  return name;
}

function vaultKeyPresentation(field: Field): VaultKeyPresentation {
  const fields = field.object(['scheme', 'header', 'field']);
  const scheme = field.member('scheme').oneOf(['bearer', 'basic', 'header'] as const);
  const only = (allowed: string | undefined): void => {
    for (const name of ['header', 'field']) {
      if (name !== allowed && fields[name] !== undefined) field.member(name).fail(`not used with scheme ${scheme}`);
    }
  };
  if (scheme === 'header') {
    only('header');
    return { scheme, header: headerName(field.member('header')) };
  }
  if (scheme === 'basic') {
    only('field');
    const which = field.member('field');
    return which.present() ? { scheme, field: which.oneOf(['username', 'password'] as const) } : { scheme };
  }
  only(undefined);
  return { scheme };
}

function secretInjection(field: Field): SecretInjection {
  const fields = field.object(['env', 'scheme', 'header', 'username']);
  const scheme = field.member('scheme').oneOf(['bearer', 'basic', 'header'] as const);
  for (const name of ['header', 'username']) {
    const allowed = (name === 'header' && scheme === 'header') || (name === 'username' && scheme === 'basic');
    if (!allowed && fields[name] !== undefined) field.member(name).fail(`not used with scheme ${scheme}`);
  }
  if (scheme === 'header') return { scheme, header: headerName(field.member('header')) };
  if (scheme === 'basic') {
    const username = field.member('username');
    if (!username.present()) return { scheme };
    const name = username.string();
    if (name.includes(':')) username.fail('must not contain ":"');
    return { scheme, username: name };
  }
  return { scheme };
}

function declaredCost(field: Field): { pattern: EndpointPattern; cost: DeclaredCost } {
  const fields = field.object(['endpoint', 'usd', 'request_field', 'response_field', 'usd_per_unit', 'max_usd']);
  const pattern = field.member('endpoint').endpoint();
  const kinds = ['usd', 'request_field', 'response_field'].filter((name) => fields[name] !== undefined);
  if (kinds.length !== 1) field.fail('needs exactly one of usd, request_field, response_field');
  const unit = field.member('usd_per_unit');
  const max = field.member('max_usd');
  if (kinds[0] === 'usd') {
    if (unit.present() || max.present()) field.fail('a flat usd cost takes no usd_per_unit or max_usd');
    return { pattern, cost: { kind: 'flat', usd: field.member('usd').usd({ positive: false }) } };
  }
  const usdPerUnit = unit.present() ? unit.usd({ positive: true }) : 1;
  if (kinds[0] === 'request_field') {
    const requestField = field.member('request_field').string(FIELD_PATH, 'a field such as amount or order.total');
    return {
      pattern,
      cost: {
        kind: 'request',
        field: requestField,
        usdPerUnit,
        ...(max.present() ? { maxUsd: max.usd({ positive: true }) } : {}),
      },
    };
  }
  const responseField = field.member('response_field').string(FIELD_PATH, 'a field such as usage.cost_usd');
  // Regression: issue 20. The answer's cost is known only after the call: the reservation, made
  // before it, needs a declared bound, or the cap could not hold.
  if (!max.present()) max.fail('is required with response_field: the call is reserved at it before it is made');
  return { pattern, cost: { kind: 'response', field: responseField, usdPerUnit, maxUsd: max.usd({ positive: true }) } };
}

function requestId(field: Field): VendorDeclaration['requestId'] {
  const fields = field.object(['header', 'body_field']);
  if ((fields.header === undefined) === (fields.body_field === undefined)) {
    field.fail('needs exactly one of header, body_field');
  }
  if (fields.header !== undefined) {
    return { header: field.member('header').string(HEADER_NAME, 'an HTTP header name') };
  }
  return { bodyField: field.member('body_field').string(FIELD_PATH, 'a field such as id or data.id') };
}

/** `response_headers: { drop: [X-Internal-Trace] }`: headers never passed back to clients. */
function droppedResponseHeaders(field: Field): string[] {
  field.object(['drop']);
  const drop = field.member('drop');
  if (!drop.present()) return [];
  return drop.items().map((item) => item.string(HEADER_NAME, 'an HTTP header name').toLowerCase());
}

const VENDOR_FIELDS = [
  'name',
  'base_url',
  'vault_key',
  'secret',
  'costs',
  'request_id',
  'sensitive',
  'response_headers',
] as const;

function declaration(field: Field, env: Env, taken: Set<string>): VendorDeclaration {
  field.object(VENDOR_FIELDS);
  const nameField = field.member('name');
  const name = nameField.string(VENDOR_NAME, 'a vendor name (a-z, 0-9 and "-", starting with a letter, at most 32)');
  if (RESERVED_VENDOR_NAMES.has(name)) nameField.fail(`"${name}" is a path the proxy serves itself`);
  if (taken.has(name)) nameField.fail(`"${name}" is already a vendor`);
  taken.add(name);

  const secret = field.member('secret');
  const secretEnvField = secret.member('env');
  const secretEnv = secretEnvField.string(ENV_NAME, 'an environment variable name');
  const injection = secretInjection(secret);
  let value: string | undefined;
  try {
    value = readSecret(env, secretEnv);
  } catch (error) {
    secretEnvField.fail((error as Error).message);
  }
  if (value === undefined) secretEnvField.fail(`${secretEnv} is not set (nor ${secretEnv}_FILE)`);

  const costs = field.member('costs');
  const sensitive = field.member('sensitive');
  const id = field.member('request_id');
  const responseHeaders = field.member('response_headers');
  return {
    name,
    baseUrl: baseUrl(field.member('base_url')),
    vaultKey: vaultKeyPresentation(field.member('vault_key')),
    secretEnv,
    injection,
    costs: costs.present() ? costs.items().map(declaredCost) : [],
    ...(id.present() ? { requestId: requestId(id) } : {}),
    sensitive: sensitive.present() ? sensitive.items().map((item) => item.endpoint()) : [],
    dropResponseHeaders: responseHeaders.present() ? droppedResponseHeaders(responseHeaders) : [],
  };
}

/**
 * Reads the vendors declared in a `KEYBRAKE_VENDORS_FILE` (YAML), strictly: an unknown field, a
 * repeated key, a duplicate or built-in name, a bad URL or endpoint, or a secret that is not set
 * stops the server with an error naming the file and the field.
 * @param builtInNames names already taken (the built-in vendors).
 */
export function parseVendorsFile(
  file: string,
  text: string,
  env: Env,
  builtInNames: Iterable<string>,
): VendorDeclaration[] {
  const document = parseDocument(text, { uniqueKeys: true, prettyErrors: false });
  const problem = document.errors[0];
  if (problem) {
    const line = problem.linePos?.[0];
    throw new VendorsFileError(
      file,
      '',
      `not valid YAML${line ? ` (line ${line.line})` : ''}: ${problem.message.split('\n')[0]}`,
    );
  }
  const root = new Field(file, '', document.toJS({ maxAliasCount: 0 }));
  root.object(['vendors']);
  const taken = new Set(builtInNames);
  return root
    .member('vendors')
    .items()
    .map((item) => declaration(item, env, taken));
}

/** The vendor modules `KEYBRAKE_VENDORS_FILE` declares, or none when it is unset. */
export function loadDeclaredVendors(env: Env, builtInNames: Iterable<string>): VendorModule[] {
  const file = env.KEYBRAKE_VENDORS_FILE;
  if (file === undefined || file === '') return [];
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new VendorsFileError(file, '', `cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  return parseVendorsFile(file, text, env, builtInNames).map(declaredVendor);
}
