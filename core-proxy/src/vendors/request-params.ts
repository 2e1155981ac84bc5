import type { IncomingHttpHeaders } from 'node:http';
import { RequestNotPriceableError } from '../errors.js';

/**
 * What a vendor will read from a request, read strictly: the query string and the body, with the
 * same decoding a lenient vendor applies, or a refusal. Regression: issue 16 ("unparseable reads
 * as empty" let a costed call through at $0).
 *
 * The rules, each failing closed with 400 `request_not_priceable`:
 * - the body's media type is parsed exactly: `application/x-www-form-urlencoded`, `application/json`
 *   or `application/<anything>+json`; a parameter such as `x=json` does not make a form JSON;
 *   multipart, any other type, a missing or repeated `Content-Type` with a body are refused;
 * - a `charset` other than utf-8, or bytes that are not UTF-8, are refused; one leading UTF-8 BOM
 *   is stripped (lenient vendors strip it, so the rest is what they price);
 * - a `Content-Encoding` other than identity (gzip, deflate, br...) or a `Transfer-Encoding` other
 *   than chunked is refused: the proxy forwards the bytes it was sent, so it does not decode them
 *   to price them (see README, "What the vendor will read");
 * - query-string parameters count as much as body parameters (Stripe reads both on a POST);
 * - form text is decoded strictly: a malformed `%` escape, a percent-encoding that is not UTF-8
 *   or a `;` (a separator for some parsers) is refused;
 * - JSON is parsed strictly: a repeated key in one object (`{"amount":1,"amount":9}`) is refused;
 *   nested objects and arrays flatten to Stripe's bracket names (`metadata[a]`, `items[0][price]`);
 * - a priced parameter sent twice (body and query, or repeated), or also under another spelling
 *   that a lenient parser folds onto it (`Amount`, ` amount`, `amount[]`, `amount[0]`), is
 *   ambiguous and refused by {@link RequestParams.one} / {@link RequestParams.all}.
 */

/** Where a request's parameters come from. */
export interface ParamSource {
  readonly headers: IncomingHttpHeaders;
  /**
   * The header list exactly as received (`[name, value, name, value, ...]`): Node keeps only the
   * first `Content-Type` and joins others, so a repeated header is only visible here.
   * @default none: repeats are not checked
   */
  readonly rawHeaders?: readonly string[];
  /** The raw query string, without the leading `?`. */
  readonly query: string;
  /** The body bytes exactly as they are forwarded. */
  readonly body: Buffer;
}

/** One parameter as the vendor will read it. */
export interface RequestParam {
  /** The name as sent (JSON nesting flattened to brackets). */
  readonly name: string;
  readonly value: string;
  readonly from: 'query' | 'body';
}

/** The media types the reader parses. */
export type BodyKind = 'none' | 'form' | 'json';

/** The parameters of one request, every place the vendor reads them. */
export class RequestParams {
  constructor(
    /** Query parameters first, then body parameters, each in the order sent. */
    readonly entries: readonly RequestParam[],
    /** How the body was read: `none` for an empty body. */
    readonly bodyKind: BodyKind,
    /** The parsed JSON body (any JSON value, e.g. a Resend batch array), when `bodyKind` is `json`. */
    readonly json: unknown,
  ) {}

  /**
   * Every value of a priced parameter, from the query and the body.
   * @throws RequestNotPriceableError when the name also arrives under another spelling.
   */
  all(name: string): string[] {
    const matching = this.entries.filter((entry) => spellsSameParam(entry.name, name));
    if (matching.some((entry) => entry.name !== name)) {
      throw new RequestNotPriceableError(
        `The priced parameter "${name}" is also sent under another spelling (case, spaces, brackets or an array): which one the vendor reads is ambiguous.`,
      );
    }
    return matching.map((entry) => entry.value);
  }

  /**
   * The one value of a priced parameter, or `undefined` when it is absent.
   * @throws RequestNotPriceableError when it is sent more than once (body and query, or repeated).
   */
  one(name: string): string | undefined {
    const values = this.all(name);
    if (values.length > 1) {
      throw new RequestNotPriceableError(
        `The priced parameter "${name}" is sent ${values.length} times (in the body, the query or both): which one the vendor reads is ambiguous.`,
      );
    }
    return values[0];
  }

  /**
   * The one value of a priced parameter as a non-negative integer (decimal digits only, as Stripe
   * amounts are), or `undefined` when absent.
   * @throws RequestNotPriceableError when it is repeated or not a plain integer (`1e5`, `100abc`, `-1`, `1.5`).
   */
  integer(name: string): number | undefined {
    const value = this.one(name);
    if (value === undefined) return undefined;
    if (!/^\d{1,15}$/.test(value)) {
      throw new RequestNotPriceableError(
        `The priced parameter "${name}" is not a plain non-negative integer: a lenient vendor could read it as another number.`,
      );
    }
    return Number(value);
  }

  /** Whether a priced parameter is present (under its exact name; other spellings throw as in {@link all}). */
  has(name: string): boolean {
    return this.all(name).length > 0;
  }
}

/**
 * Reads the query and body of a request as the vendor will, for pricing.
 * @throws RequestNotPriceableError when any of it cannot be read with certainty.
 */
export function readRequestParams(source: ParamSource): RequestParams {
  const query = parseFormStrict(source.query, 'query').map((entry) => ({ ...entry, from: 'query' as const }));
  const body = readBody(source);
  return new RequestParams([...query, ...body.entries], body.kind, body.json);
}

/** Headers whose repetition makes the body's reading ambiguous. */
const SINGLE_HEADERS = ['content-type', 'content-encoding', 'transfer-encoding', 'content-length'];

function readBody(source: ParamSource): { entries: RequestParam[]; kind: BodyKind; json: unknown } {
  for (const name of SINGLE_HEADERS) {
    if (countHeader(source.rawHeaders, name) > 1) {
      throw new RequestNotPriceableError(`The request has more than one ${name} header.`);
    }
  }
  const encoding = contentCodings(source.headers);
  if (encoding !== undefined) {
    throw new RequestNotPriceableError(
      `The body has Content-Encoding "${encoding}": Keybrake prices only identity-encoded bodies.`,
    );
  }
  const transfer = String(source.headers['transfer-encoding'] ?? 'chunked');
  if (transfer.split(',').some((coding) => coding.trim().toLowerCase() !== 'chunked')) {
    throw new RequestNotPriceableError('The body has a Transfer-Encoding other than chunked.');
  }
  if (source.body.length === 0) return { entries: [], kind: 'none', json: undefined };

  const header = source.headers['content-type'];
  if (header === undefined) {
    throw new RequestNotPriceableError(
      'The request has a body but no Content-Type: how the vendor reads it is unknown.',
    );
  }
  const media = parseMediaType(header);
  if (!media) throw new RequestNotPriceableError('The Content-Type header could not be parsed exactly.');
  const charset = media.parameters.get('charset');
  if (charset !== undefined && !/^utf-?8$/i.test(charset)) {
    throw new RequestNotPriceableError(`The body's charset "${charset.slice(0, 40)}" is not utf-8.`);
  }
  const text = decodeUtf8(source.body);
  const withBody = (entries: Omit<RequestParam, 'from'>[]): RequestParam[] =>
    entries.map((entry) => ({ ...entry, from: 'body' as const }));
  if (media.type === 'application/x-www-form-urlencoded') {
    return { entries: withBody(parseFormStrict(text, 'body')), kind: 'form', json: undefined };
  }
  if (media.type === 'application/json' || /^application\/[^/]+\+json$/.test(media.type)) {
    const json = parseJsonStrict(text);
    return { entries: withBody(flattenJson(json)), kind: 'json', json };
  }
  if (media.type.startsWith('multipart/')) {
    throw new RequestNotPriceableError('Multipart bodies are not priced: send the parameters form-encoded or as JSON.');
  }
  throw new RequestNotPriceableError(
    `A ${media.type.slice(0, 80)} body is not priced: send it form-encoded or as JSON.`,
  );
}

/** How many times a header was sent, from the raw list (0 when unknown). */
export function countHeader(rawHeaders: readonly string[] | undefined, name: string): number {
  if (!rawHeaders) return 0;
  let count = 0;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if ((rawHeaders[i] as string).toLowerCase() === name) count += 1;
  }
  return count;
}

/** The content codings of the body other than identity, or `undefined` when it is not encoded. */
export function contentCodings(headers: IncomingHttpHeaders): string | undefined {
  const value = headers['content-encoding'];
  if (value === undefined) return undefined;
  const codings = String(value)
    .split(',')
    .map((coding) => coding.trim().toLowerCase());
  return codings.every((coding) => coding === 'identity') ? undefined : String(value).slice(0, 40);
}

const TOKEN = "[!#$%&'*+.^_`|~0-9A-Za-z-]+";
const MEDIA_TYPE = new RegExp(`^\\s*(${TOKEN})/(${TOKEN})\\s*`, 'y');
const MEDIA_PARAMETER = new RegExp(`;\\s*(${TOKEN})=(?:(${TOKEN})|"((?:[^"\\\\]|\\\\.)*)")\\s*`, 'y');

/**
 * Parses a `Content-Type` exactly (RFC 9110 media type): `type/subtype` lower-cased and its
 * parameters, or `undefined` for anything else (a list, a repeated parameter, stray text).
 */
export function parseMediaType(header: string): { type: string; parameters: Map<string, string> } | undefined {
  MEDIA_TYPE.lastIndex = 0;
  const head = MEDIA_TYPE.exec(header);
  if (!head) return undefined;
  const parameters = new Map<string, string>();
  let at = MEDIA_TYPE.lastIndex;
  while (at < header.length) {
    MEDIA_PARAMETER.lastIndex = at;
    const match = MEDIA_PARAMETER.exec(header);
    if (!match) return undefined;
    const name = (match[1] as string).toLowerCase();
    if (parameters.has(name)) return undefined;
    parameters.set(name, match[2] ?? (match[3] as string).replace(/\\(.)/g, '$1'));
    at = MEDIA_PARAMETER.lastIndex;
  }
  return { type: `${head[1] as string}/${head[2] as string}`.toLowerCase(), parameters };
}

const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

/** Decodes UTF-8, dropping one leading BOM. */
function decodeUtf8(bytes: Buffer): string {
  try {
    return UTF8.decode(bytes);
  } catch {
    throw new RequestNotPriceableError('The body is not valid UTF-8.');
  }
}

/** Decodes `application/x-www-form-urlencoded` text, refusing what parsers disagree on. */
function parseFormStrict(text: string, where: 'query' | 'body'): Omit<RequestParam, 'from'>[] {
  if (text === '') return [];
  if (text.includes(';')) {
    throw new RequestNotPriceableError(`The ${where} has a ";", which some parsers read as a separator.`);
  }
  if (/%(?![0-9A-Fa-f]{2})/.test(text)) {
    throw new RequestNotPriceableError(`The ${where} has a malformed percent-encoding.`);
  }
  const decode = (part: string): string => {
    try {
      return decodeURIComponent(part.replace(/\+/g, ' '));
    } catch {
      throw new RequestNotPriceableError(`The ${where} has a percent-encoding that is not UTF-8.`);
    }
  };
  const entries: Omit<RequestParam, 'from'>[] = [];
  // A leading BOM (a body's is already gone) is what a lenient parser strips.
  for (const pair of text.replace(/^\uFEFF/, '').split('&')) {
    if (pair === '') continue;
    const equals = pair.indexOf('=');
    entries.push(
      equals < 0
        ? { name: decode(pair), value: '' }
        : { name: decode(pair.slice(0, equals)), value: decode(pair.slice(equals + 1)) },
    );
  }
  return entries;
}

/** Whether `sent` is `priced` or a spelling a lenient parser folds onto it. */
function spellsSameParam(sent: string, priced: string): boolean {
  const folded = (sent.split('\u0000')[0] as string).trim().toLowerCase();
  const target = priced.toLowerCase();
  return folded === target || folded.startsWith(`${target}[`) || folded.startsWith(`${target}.`);
}

const MAX_JSON_DEPTH = 64;
const JSON_LITERAL = /true|false|null|-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

/**
 * Parses JSON strictly: `JSON.parse` keeps the last of a repeated key, another parser the first,
 * so a repeated key in any object is refused, as is nesting deeper than 64.
 */
function parseJsonStrict(text: string): unknown {
  const fail = (why: string): never => {
    throw new RequestNotPriceableError(`The JSON body ${why}.`);
  };
  let at = 0;
  const space = (): void => {
    while (at < text.length && ' \t\n\r'.includes(text[at] as string)) at += 1;
  };
  const string = (): string => {
    const start = at;
    at += 1;
    while (at < text.length) {
      const char = text[at];
      if (char === '\\') at += 2;
      else if (char === '"') {
        at += 1;
        try {
          return JSON.parse(text.slice(start, at)) as string;
        } catch {
          return fail('is not valid JSON');
        }
      } else at += 1;
    }
    return fail('is not valid JSON');
  };
  const value = (depth: number): void => {
    if (depth > MAX_JSON_DEPTH) fail(`nests deeper than ${MAX_JSON_DEPTH}`);
    space();
    const char = text[at];
    if (char === '{' || char === '[') {
      const object = char === '{';
      const close = object ? '}' : ']';
      const keys = new Set<string>();
      at += 1;
      space();
      if (text[at] === close) {
        at += 1;
        return;
      }
      for (;;) {
        if (object) {
          space();
          if (text[at] !== '"') fail('is not valid JSON');
          const key = string();
          if (keys.has(key)) fail('repeats a key in one object, which parsers read differently');
          keys.add(key);
          space();
          if (text[at] !== ':') fail('is not valid JSON');
          at += 1;
        }
        value(depth + 1);
        space();
        if (text[at] === ',') {
          at += 1;
          continue;
        }
        if (text[at] === close) {
          at += 1;
          return;
        }
        fail('is not valid JSON');
      }
    }
    if (char === '"') {
      string();
      return;
    }
    JSON_LITERAL.lastIndex = at;
    if (!JSON_LITERAL.exec(text)) fail('is not valid JSON');
    at = JSON_LITERAL.lastIndex;
  };
  value(0);
  space();
  if (at !== text.length) fail('is not valid JSON');
  try {
    return JSON.parse(text);
  } catch {
    return fail('is not valid JSON');
  }
}

/** A JSON object's members as Stripe-style bracket names; a non-object body has no named parameters. */
function flattenJson(json: unknown): Omit<RequestParam, 'from'>[] {
  const entries: Omit<RequestParam, 'from'>[] = [];
  const visit = (name: string, value: unknown): void => {
    if (Array.isArray(value)) value.forEach((item, i) => visit(`${name}[${i}]`, item));
    else if (value !== null && typeof value === 'object') {
      for (const [key, item] of Object.entries(value)) visit(`${name}[${key}]`, item);
    } else entries.push({ name, value: value === null ? '' : String(value) });
  };
  if (json !== null && typeof json === 'object' && !Array.isArray(json)) {
    for (const [key, item] of Object.entries(json)) visit(key, item);
  }
  return entries;
}

/** What a request says about a `_method` override anywhere a framework reads one. */
export type MethodOverrideFinding = 'none' | 'found' | 'unreadable';

/**
 * Looks for a `_method` parameter (any case, any nesting) in the query and the body, wherever a
 * framework's method-override middleware reads one (Rack, Laravel, Express method-override).
 * `unreadable`: the body is compressed, so it cannot be checked.
 */
export function findMethodOverride(source: ParamSource): MethodOverrideFinding {
  const isOverride = (name: string): boolean =>
    (name.split('\u0000')[0] as string).trim().toLowerCase().split(/[[.]/)[0] === '_method';
  const looseNames = (text: string): string[] => [...new URLSearchParams(text.replace(/;/g, '&')).keys()];
  if (looseNames(source.query).some(isOverride)) return 'found';
  if (source.body.length === 0) return 'none';
  if (contentCodings(source.headers) !== undefined) return 'unreadable';
  const text = source.body.toString('utf8').replace(/^\uFEFF/, '');
  const media = parseMediaType(String(source.headers['content-type'] ?? ''));
  if (media?.type === 'application/x-www-form-urlencoded') return looseNames(text).some(isOverride) ? 'found' : 'none';
  if (media && (media.type === 'application/json' || /^application\/[^/]+\+json$/.test(media.type))) {
    try {
      return flattenJson(JSON.parse(text)).some((entry) => isOverride(entry.name)) ? 'found' : 'none';
    } catch {
      // Not JSON after all: scan it as text below.
    }
  }
  // Multipart or anything else: any `_method` that starts a name (multipart `name="_method"`).
  const decoded = text.replace(/%([0-9A-Fa-f]{2})/g, (_match, hex: string) => String.fromCharCode(parseInt(hex, 16)));
  return /(^|[^A-Za-z0-9])_method/i.test(decoded) ? 'found' : 'none';
}
