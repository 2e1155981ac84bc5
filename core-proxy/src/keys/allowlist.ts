import { InvalidRequestError } from '../errors.js';

/** Methods an allowlist entry may name. */
export const ALLOWED_METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD'] as const;

/** One parsed `"METHOD /path"` allowlist entry; `*` segments match exactly one path segment. */
export interface EndpointPattern {
  readonly method: string;
  readonly segments: readonly string[];
}

/**
 * Headers (and the query parameter `_method`) that some frameworks honour to change a request's
 * method. They could smuggle a `DELETE` past an allowlist that only permits `GET`, so they are
 * never forwarded and a request whose override differs from its real method is refused.
 */
export const METHOD_OVERRIDE_HEADERS = ['x-http-method-override', 'x-http-method', 'x-method-override'] as const;

/**
 * Parses and normalizes one allowlist entry.
 * @throws InvalidRequestError when the entry is not `"METHOD /path"`.
 */
export function parseEndpointPattern(entry: string): EndpointPattern {
  const match = /^([A-Za-z]+) (\/\S*)$/.exec(entry.trim());
  if (!match) {
    throw new InvalidRequestError(`allowed_endpoints entry "${entry}" must look like "POST /v1/charges".`);
  }
  const method = (match[1] as string).toUpperCase();
  if (!(ALLOWED_METHODS as readonly string[]).includes(method)) {
    throw new InvalidRequestError(`allowed_endpoints entry "${entry}" has an unsupported method.`);
  }
  const path = match[2] as string;
  if (path.includes('?') || path.includes('#')) {
    throw new InvalidRequestError(`allowed_endpoints entry "${entry}" must be a path without a query.`);
  }
  const segments = normalizePath(
    path,
    (message) => new InvalidRequestError(`allowed_endpoints entry "${entry}": ${message}`),
  );
  if (segments.some((segment) => segment.includes('*') && segment !== '*')) {
    throw new InvalidRequestError(`allowed_endpoints entry "${entry}": "*" must be a whole segment.`);
  }
  return { method, segments };
}

/** Formats a pattern back to its canonical `"METHOD /a/b"` text. */
export function formatEndpointPattern(pattern: EndpointPattern): string {
  return `${pattern.method} /${pattern.segments.join('/')}`;
}

/**
 * Splits a raw request path into decoded, normalized segments: each segment percent-decoded once,
 * empty segments (duplicate or trailing slashes) and `.` dropped, `..` resolved. Anything that
 * could make the upstream see a different path than the one checked is refused: an encoded `/`
 * or `\`, a `%` left after decoding (double encoding), control characters, or `..` above the root.
 */
export function normalizePath(rawPath: string, fail: (message: string) => Error = pathError): string[] {
  if (!rawPath.startsWith('/')) throw fail('a path must start with "/".');
  const segments: string[] = [];
  for (const rawSegment of rawPath.split('/')) {
    let segment: string;
    try {
      // Only a `%` sequence decodes to anything else (or fails to decode).
      segment = rawSegment.includes('%') ? decodeURIComponent(rawSegment) : rawSegment;
    } catch {
      throw fail('the path has a malformed percent-encoding.');
    }
    // eslint-disable-next-line no-control-regex
    if (/[/\\%\u0000-\u001f\u007f]/.test(segment)) {
      throw fail('the path has an encoded separator, a double encoding or a control character.');
    }
    if (segment === '' || segment === '.') continue;
    if (segment === '..') {
      if (segments.length === 0) throw fail('the path climbs above the root.');
      segments.pop();
      continue;
    }
    segments.push(segment);
  }
  return segments;
}

function pathError(message: string): Error {
  return new InvalidRequestError(`Request path refused: ${message}`);
}

/** Re-encodes normalized segments into the exact path that is forwarded upstream. */
export function encodePath(segments: readonly string[]): string {
  // A call's segments are encoded for its fingerprint, its audit records and its upstream URL: once.
  let path = encodedPaths.get(segments);
  if (path === undefined) {
    path = `/${segments.map((segment) => encodeURIComponent(segment).replace(/%40/g, '@').replace(/%3A/g, ':')).join('/')}`;
    encodedPaths.set(segments, path);
  }
  return path;
}

/** Segment lists are never changed once normalized (they are `readonly`): their encoding is kept with them. */
const encodedPaths = new WeakMap<readonly string[], string>();

/** Whether a method and normalized path match one pattern. */
export function matchesPattern(pattern: EndpointPattern, method: string, segments: readonly string[]): boolean {
  if (pattern.method !== method || pattern.segments.length !== segments.length) return false;
  return pattern.segments.every((expected, i) => expected === '*' || expected === segments[i]);
}

const CANONICAL_SEGMENT = /^[a-z0-9_-]*$/;

/**
 * One path segment as a lenient vendor router may see it: Unicode-compatibility folded, lower-cased,
 * a `;matrix` suffix, surrounding spaces and a trailing `.json`-style extension or dot dropped.
 * So `PAYMENT_INTENTS`, `Charges`, `payment_intents ` and `Messages` all route like the canonical
 * segment. Regression: issue 16 (a wildcard allowlist let `/v1/PAYMENT_INTENTS` through unpriced).
 */
export function routeSegment(segment: string): string {
  // Lower-case ASCII letters, digits, `_` and `-` fold to themselves: the common case skips the folding.
  if (CANONICAL_SEGMENT.test(segment)) return segment;
  return segment
    .normalize('NFKC')
    .toLowerCase()
    .replace(/;.*$/s, '')
    .trim()
    .replace(/(\.[a-z0-9]*)+$/, '')
    .trim();
}

/**
 * Whether a call may reach the endpoint a pattern names, matched the way the vendor routes
 * (see {@link routeSegment}). For what costs money or is sensitive, where matching too much is
 * the safe side; the allowlist itself matches exactly ({@link matchesPattern}).
 */
export function matchesRoute(pattern: EndpointPattern, method: string, segments: readonly string[]): boolean {
  if (pattern.method !== method.toUpperCase() || pattern.segments.length !== segments.length) return false;
  return pattern.segments.every(
    (expected, i) => expected === '*' || routeSegment(expected) === routeSegment(segments[i] as string),
  );
}

/** Parsed allowlist entries by their text: a key's entries are parsed once, not on every call. */
const parsedEntries = new Map<string, EndpointPattern>();
const MAX_PARSED_ENTRIES = 10_000;

/** One allowlist entry, parsed (from a cache: a pattern is a pure function of its entry's text). */
function parsedEntry(entry: string): EndpointPattern {
  let pattern = parsedEntries.get(entry);
  if (pattern === undefined) {
    pattern = parseEndpointPattern(entry);
    if (parsedEntries.size >= MAX_PARSED_ENTRIES) parsedEntries.clear();
    parsedEntries.set(entry, pattern);
  }
  return pattern;
}

/** Whether a key's `allowed_endpoints` (as stored) allow a method and normalized path. */
export function allowsCall(entries: readonly string[], method: string, segments: readonly string[]): boolean {
  for (const entry of entries) if (matchesPattern(parsedEntry(entry), method, segments)) return true;
  return false;
}

/** Whether a method and normalized path are allowed by any of the patterns. */
export function isAllowed(patterns: readonly EndpointPattern[], method: string, segments: readonly string[]): boolean {
  return patterns.some((pattern) => matchesPattern(pattern, method, segments));
}

/** Whether every call `inner` allows is also allowed by `outer` (a child key may not widen its parent). */
export function isPatternCovered(inner: EndpointPattern, outers: readonly EndpointPattern[]): boolean {
  return outers.some(
    (outer) =>
      outer.method === inner.method &&
      outer.segments.length === inner.segments.length &&
      outer.segments.every((segment, i) => segment === '*' || segment === inner.segments[i]),
  );
}
