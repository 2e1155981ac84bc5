import { describe, expect, it } from 'vitest';
import { encodePath, normalizePath } from '../src/keys/allowlist.js';

/** Refusals carry their message on a plain error here, so the rows name the exact reason. */
const refuse = (message: string): Error => new Error(message);

const NOT_ROOTED = 'a path must start with "/".';
const MALFORMED = 'the path has a malformed percent-encoding.';
const SMUGGLED = 'the path has an encoded separator, a double encoding or a control character.';
const ABOVE_ROOT = 'the path climbs above the root.';

describe('normalizePath: the segments the allowlist checks and the upstream receives', () => {
  it.each<[string, string, readonly string[]]>([
    ['the root', '/', []],
    ['a plain path', '/v1/charges', ['v1', 'charges']],
    ['a trailing slash', '/v1/charges/', ['v1', 'charges']],
    ['duplicate slashes', '//v1///charges//', ['v1', 'charges']],
    ['a dot segment', '/v1/./charges', ['v1', 'charges']],
    ['a dot segment at the end', '/v1/charges/.', ['v1', 'charges']],
    ['a dot-dot segment', '/v1/refunds/../charges', ['v1', 'charges']],
    ['two dot-dot segments back to the root', '/a/b/../../c', ['c']],
    ['dot-dot back to exactly the root', '/v1/..', []],
    ['an encoded dot-dot is resolved like a plain one', '/v1/%2e%2e/charges', ['charges']],
    ['an upper-case encoded dot-dot', '/v1/x/%2E%2E/charges', ['v1', 'charges']],
    ['a half-encoded dot-dot', '/v1/x/.%2e/charges', ['v1', 'charges']],
    ['an encoded dot', '/v1/%2e/charges', ['v1', 'charges']],
    ['three dots are a name, not a dot segment', '/v1/.../charges', ['v1', '...', 'charges']],
    ['a dot inside a name', '/v1/charges.json', ['v1', 'charges.json']],
    ['a percent-encoded letter is decoded once', '/v1/ch%61rges', ['v1', 'charges']],
    ['an encoded space', '/v1/a%20b', ['v1', 'a b']],
    ['a plus is not a space in a path', '/v1/a+b', ['v1', 'a+b']],
    ['an encoded question mark stays in its segment', '/v1/%3Fq', ['v1', '?q']],
    ['an encoded hash stays in its segment', '/v1/%23x', ['v1', '#x']],
    ['UTF-8 percent-encoding', '/v1/caf%C3%A9', ['v1', 'café']],
    ['unicode written raw', '/v1/café', ['v1', 'café']],
    ['an encoded emoji (4 UTF-8 bytes)', '/v1/%F0%9F%98%80', ['v1', '😀']],
    [
      'an encoded `@` and `:` (Twilio account paths)',
      '/2010-04-01/Accounts/AC1%3Ax%40y',
      ['2010-04-01', 'Accounts', 'AC1:x@y'],
    ],
    ['case is kept', '/v1/PAYMENT_INTENTS', ['v1', 'PAYMENT_INTENTS']],
  ])('%s: %s', (_name, path, segments) => {
    expect(normalizePath(path, refuse)).toEqual(segments);
  });

  it.each<[string, string, string]>([
    ['no leading slash', 'v1/charges', NOT_ROOTED],
    ['the empty path', '', NOT_ROOTED],
    ['an absolute URL', 'http://vendor.example/v1', NOT_ROOTED],
    ['a lone percent', '/v1/%', MALFORMED],
    ['a truncated escape', '/v1/%E0%A4%A', MALFORMED],
    ['a non-hex escape', '/v1/%zz', MALFORMED],
    ['an overlong UTF-8 dot', '/v1/%C0%AE%C0%AE', MALFORMED],
    ['an encoded lone surrogate', '/v1/%ED%A0%80', MALFORMED],
    ['an encoded slash', '/v1/charges%2Fch_1', SMUGGLED],
    ['an encoded slash in lower case', '/v1/%2f', SMUGGLED],
    ['an encoded backslash', '/v1/%5C..%5Cadmin', SMUGGLED],
    ['a raw backslash', '/v1/..\\admin', SMUGGLED],
    ['a double-encoded dot-dot', '/v1/%252e%252e/admin', SMUGGLED],
    ['a double-encoded slash', '/v1/a%252Fb', SMUGGLED],
    ['an encoded NUL', '/v1/charges%00', SMUGGLED],
    ['an encoded newline', '/v1/a%0Ab', SMUGGLED],
    ['a raw tab', '/v1/a\tb', SMUGGLED],
    ['an encoded DEL', '/v1/%7F', SMUGGLED],
    ['dot-dot above the root', '/..', ABOVE_ROOT],
    ['dot-dot above the root after a segment', '/v1/../..', ABOVE_ROOT],
    ['an encoded dot-dot above the root', '/%2e%2e/admin', ABOVE_ROOT],
  ])('refuses %s: %s', (_name, path, message) => {
    expect(() => normalizePath(path, refuse)).toThrow(new Error(message));
  });

  it('refuses by default with a 400 invalid_request that names the reason', () => {
    let thrown: unknown;
    try {
      normalizePath('/v1/%2F');
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toMatchObject({ statusCode: 400, code: 'invalid_request' });
    expect((thrown as Error).message).toBe(`Request path refused: ${SMUGGLED}`);
  });
});

describe('encodePath: the exact path forwarded upstream', () => {
  it.each<[readonly string[], string]>([
    [[], '/'],
    [['v1', 'charges'], '/v1/charges'],
    [['v1', 'a b'], '/v1/a%20b'],
    [['v1', '?q'], '/v1/%3Fq'],
    [['v1', '#x'], '/v1/%23x'],
    [['v1', 'café'], '/v1/caf%C3%A9'],
    [['v1', '😀'], '/v1/%F0%9F%98%80'],
    // Twilio's account paths carry `@` and `:` literally; encoding them would change the route.
    [['Accounts', 'AC1:x@y'], '/Accounts/AC1:x@y'],
    [['v1', 'a+b'], '/v1/a%2Bb'],
  ])('%j → %s', (segments, path) => {
    expect(encodePath(segments)).toBe(path);
  });

  it.each(['/v1/charges', '/v1/a%20b', '/v1/caf%C3%A9', '/Accounts/AC1:x@y', '/v1/%3Fq'])(
    'normalizing what it forwards gives back the same segments: %s',
    (path) => {
      const segments = normalizePath(path, refuse);
      expect(normalizePath(encodePath(segments), refuse)).toEqual(segments);
    },
  );
});
