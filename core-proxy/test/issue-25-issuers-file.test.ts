import { writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { issuersFile } from './workload-tokens.js';

const ISSUER = 'https://issuer.example';

function issuers(
  change: { issuer?: Record<string, unknown>; policy?: Record<string, unknown>; grant?: Record<string, unknown> } = {},
) {
  return {
    issuers: [
      { issuer: ISSUER, jwks_file: 'jwks.json', audiences: ['keybrake'], algorithms: ['RS256'], ...change.issuer },
    ],
    policies: [
      {
        name: 'p',
        match: { iss: ISSUER, sub: 'billing-*' },
        grant: { vendors: ['stripe'], ...change.grant },
        ...change.policy,
      },
    ],
  };
}

function load(content: unknown): unknown {
  return loadConfig({
    KEYBRAKE_API_KEYS: 'kb_admin_test',
    STRIPE_SECRET_KEY: 'sk_test_x',
    KEYBRAKE_ISSUERS_FILE: issuersFile(content as Record<string, unknown>),
  }).issuers;
}

describe('issue 25: KEYBRAKE_ISSUERS_FILE is checked at start, with errors that name the field', () => {
  it('loads a valid file: issuers, policies, defaults', () => {
    const config = load(issuers()) as {
      issuers: { clockSkewSeconds: number; keys: { kind: string } }[];
      policies: { grant: { otherKeys: string; maxTtlSeconds: number } }[];
    };
    expect(config.issuers[0]?.clockSkewSeconds).toBe(30);
    expect(config.issuers[0]?.keys.kind).toBe('file');
    expect(config.policies[0]?.grant.otherKeys).toBe('none');
    expect(config.policies[0]?.grant.maxTtlSeconds).toBe(7 * 86_400);
    const discovery = load(issuers({ issuer: { jwks_file: undefined } })) as { issuers: { keys: unknown }[] };
    expect(discovery.issuers[0]?.keys).toEqual({
      kind: 'discovery',
      url: `${ISSUER}/.well-known/openid-configuration`,
    });
  });

  it.each([
    [
      'HS256 (an HMAC algorithm)',
      issuers({ issuer: { algorithms: ['RS256', 'HS256'] } }),
      /issuers\[0\]\.algorithms\[1\]: "HS256" is not an asymmetric/,
    ],
    ['alg none', issuers({ issuer: { algorithms: ['none'] } }), /issuers\[0\]\.algorithms\[0\]: "none"/],
    ['no audiences', issuers({ issuer: { audiences: [] } }), /issuers\[0\]\.audiences: must be a non-empty list/],
    [
      'a clock skew over 5 minutes',
      issuers({ issuer: { clock_skew: '10m' } }),
      /issuers\[0\]\.clock_skew: may be at most 5m/,
    ],
    [
      'jwks_file and jwks_uri',
      issuers({ issuer: { jwks_uri: 'https://issuer.example/keys' } }),
      /name jwks_file or jwks_uri, not both/,
    ],
    ['an unknown field', issuers({ issuer: { audience: ['keybrake'] } }), /issuers\[0\]: unknown field\(s\): audience/],
    ['a policy without iss', issuers({ policy: { match: { sub: 'x' } } }), /policies\[0\]\.match\.iss: is required/],
    [
      'a policy for an unlisted issuer',
      issuers({ policy: { match: { iss: 'https://other.example' } } }),
      /policies\[0\]\.match\.iss/,
    ],
    [
      'a wildcard inside a value',
      issuers({ policy: { match: { iss: ISSUER, sub: 'a*b' } } }),
      /policies\[0\]\.match\.sub: "a\*b"/,
    ],
    ['a wildcard on iss', issuers({ policy: { match: { iss: `${ISSUER}*` } } }), /policies\[0\]\.match\.iss/],
    [
      'an unknown vendor',
      issuers({ grant: { vendors: ['stripee'] } }),
      /policies\[0\]\.grant\.vendors\[0\]: "stripee" is not a vendor/,
    ],
    [
      'a label prefix with ".."',
      issuers({ grant: { label_prefix: 'argo/../x/' } }),
      /policies\[0\]\.grant\.label_prefix: must be canonical/,
    ],
    [
      'a bad ceiling entry',
      issuers({ grant: { allowed_endpoints: ['FETCH /v1/x'] } }),
      /policies\[0\]\.grant\.allowed_endpoints\[0\]/,
    ],
    [
      'a bad other_keys',
      issuers({ grant: { other_keys: 'all' } }),
      /policies\[0\]\.grant\.other_keys: must be none, read or manage/,
    ],
    [
      'a policy name twice',
      { ...issuers(), policies: [...issuers().policies, ...issuers().policies] },
      /policies\[1\]\.name: "p" is used twice/,
    ],
  ])('refuses %s', (_what, content, message) => {
    expect(() => load(content)).toThrow(message);
  });

  it('refuses a file that is not there or not YAML', () => {
    expect(() =>
      loadConfig({ KEYBRAKE_API_KEYS: 'kb_admin_test', KEYBRAKE_ISSUERS_FILE: '/nonexistent/issuers.yaml' }),
    ).toThrow(/cannot read the file/);
    const broken = issuersFile({});
    writeFileSync(broken, 'issuers: [\n  - issuer: x\n  - issuer: x\n');
    expect(() => loadConfig({ KEYBRAKE_API_KEYS: 'kb_admin_test', KEYBRAKE_ISSUERS_FILE: broken })).toThrow(
      /not valid YAML/,
    );
  });
});
