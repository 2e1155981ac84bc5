import { describe, expect, it } from 'vitest';
import { canonicalJson } from '../src/index.js';
import { GENESIS_HASH, auditRecordText, chainEntry, chainHash } from '../src/audit/chain.js';
import type { AuditRecordJson } from '../src/audit/record.js';

/**
 * The bytes every replica and every verifier hash for a record: keys sorted by UTF-16 code units,
 * no whitespace, numbers and strings as ECMAScript's JSON.stringify writes them (the JCS rules).
 */
describe('canonicalJson', () => {
  it.each<[string, unknown, string]>([
    // Scalars
    ['null', null, 'null'],
    ['true', true, 'true'],
    ['false', false, 'false'],
    ['zero', 0, '0'],
    ['negative zero is written as 0', -0, '0'],
    ['a negative integer', -17, '-17'],
    ['a decimal', 0.1, '0.1'],
    ['a decimal that is not exact in binary', 0.1 + 0.2, '0.30000000000000004'],
    ['the largest safe integer', Number.MAX_SAFE_INTEGER, '9007199254740991'],
    ['a large number in fixed notation', 1e20, '100000000000000000000'],
    ['from 1e21 on, exponent notation', 1e21, '1e+21'],
    ['a small number in exponent notation', 1e-7, '1e-7'],
    ['the smallest denormal', 5e-324, '5e-324'],
    ['a money amount in micros', 1234.567891, '1234.567891'],
    ['a string', 'abc', '"abc"'],
    ['the empty string', '', '""'],
    ['a quote and a backslash', 'a"b\\c', '"a\\"b\\\\c"'],
    ['short escapes', '\b\f\n\r\t', '"\\b\\f\\n\\r\\t"'],
    ['other control characters as \\u00xx, lower-case hex', '\u0000\u001f', '"\\u0000\\u001f"'],
    ['DEL is not escaped', '\u007f', '"\u007f"'],
    ['a slash is not escaped', 'a/b', '"a/b"'],
    ['non-ASCII is written raw, not as \\u escapes', 'café ж', '"café ж"'],
    ['an astral character is written raw', '😀', '"😀"'],
    ['U+2028 and U+2029 are written raw', '\u2028\u2029', '"\u2028\u2029"'],
    ['a lone high surrogate is escaped', '\ud800', '"\\ud800"'],
    ['a lone low surrogate is escaped', 'a\udfffb', '"a\\udfffb"'],
    // Arrays
    ['the empty array', [], '[]'],
    ['array order is kept', [3, 1, 2], '[3,1,2]'],
    ['an undefined array item becomes null', [1, undefined, 2], '[1,null,2]'],
    ['nested arrays', [[], [[]]], '[[],[[]]]'],
    // Objects
    ['the empty object', {}, '{}'],
    ['keys sorted', { b: 1, a: 2 }, '{"a":2,"b":1}'],
    ['upper case sorts before lower case', { b: 1, B: 2, a: 3, A: 4 }, '{"A":4,"B":2,"a":3,"b":1}'],
    ['a prefix sorts first', { ab: 1, a: 2, '': 3 }, '{"":3,"a":2,"ab":1}'],
    [
      'integer-like keys sort as strings, not numbers',
      { 10: 'ten', 9: 'nine', 1: 'one' },
      '{"1":"one","10":"ten","9":"nine"}',
    ],
    [
      'keys sorted by UTF-16 code unit: an astral key (U+D83D…) before U+FFFF, unlike code-point order',
      { '\uffff': 1, '😀': 2, é: 3, z: 4 },
      '{"z":4,"é":3,"😀":2,"\uffff":1}',
    ],
    ['an undefined member is dropped', { a: undefined, b: 1 }, '{"b":1}'],
    ['an object of undefined members is empty', { a: undefined }, '{}'],
    ['a null member is kept', { a: null }, '{"a":null}'],
    ['negative zero as a member', { cost_usd: -0 }, '{"cost_usd":0}'],
    ['a key is escaped like a string', { 'a"b\n': 1 }, '{"a\\"b\\n":1}'],
    [
      'nested objects are sorted at every depth',
      { b: { d: 1, c: [{ y: 1, x: 2 }] }, a: 0 },
      '{"a":0,"b":{"c":[{"x":2,"y":1}],"d":1}}',
    ],
    [
      'an audit record',
      {
        seq: 1,
        path: '/v1/payment_intents',
        cost_usd: 20,
        tainted: false,
        reason: null,
        at: '2026-01-01T00:00:00.000Z',
      },
      '{"at":"2026-01-01T00:00:00.000Z","cost_usd":20,"path":"/v1/payment_intents","reason":null,"seq":1,"tainted":false}',
    ],
  ])('%s', (_name, value, text) => {
    expect(canonicalJson(value)).toBe(text);
  });

  it('is the same text whatever order the keys were written in', () => {
    const forward = canonicalJson({ a: 1, b: { c: 2, d: 3 } });
    const backward = canonicalJson({ b: { d: 3, c: 2 }, a: 1 });
    expect(backward).toBe(forward);
    expect(forward).toBe('{"a":1,"b":{"c":2,"d":3}}');
  });

  it.each<[string, unknown]>([
    ['NaN', Number.NaN],
    ['Infinity', Number.POSITIVE_INFINITY],
    ['-Infinity as a member', { a: Number.NEGATIVE_INFINITY }],
    ['NaN in an array', [1, Number.NaN]],
  ])('refuses a non-finite number: %s', (_name, value) => {
    expect(() => canonicalJson(value)).toThrow(new TypeError('canonical JSON cannot encode a non-finite number'));
  });
});

/**
 * Issue 21: the stores write a record's chain text without the generic sort (`auditRecordText`):
 * the bytes must be exactly `canonicalJson`'s, or every chain written since would fail to verify.
 */
describe('issue 21: the audit record text the stores hash', () => {
  const record: AuditRecordJson = {
    seq: 42,
    at: '2026-12-01T15:00:00.000Z',
    key_id: 'vk_123',
    vendor: 'stripe',
    method: 'POST',
    path: '/v1/payment_intents',
    outcome: 'forwarded',
    reason: null,
    status: 200,
    cost_usd: 1.000001,
    vendor_request_id: 'req_1',
    idempotency_key: 'idem "quoted" \\ \u0000 ж 😀 \ud800',
    agent_run_label: 'run\u2028label',
    tainted: false,
  };
  it.each<[string, Partial<AuditRecordJson> & Record<string, unknown>]>([
    ['a forwarded call', {}],
    ['a blocked call with nulls', { key_id: null, status: null, reason: 'cap_exhausted', vendor_request_id: null }],
    ['a tiny and a huge cost', { cost_usd: 1e-7, seq: 1e21 }],
    ['a tainted unknown outcome', { tainted: true, outcome: 'unknown', idempotency_key: null, agent_run_label: null }],
    ['an extra member (the generic path)', { extra: 'x' }],
    ['an undefined member (the generic path)', { reason: undefined }],
  ])('%s', (_name, change) => {
    const changed = { ...record, ...change } as AuditRecordJson;
    expect(auditRecordText(changed)).toBe(canonicalJson(changed));
    expect(chainEntry(GENESIS_HASH, changed).hash).toBe(chainHash(GENESIS_HASH, changed));
  });

  it('refuses a non-finite cost like canonicalJson', () => {
    expect(() => auditRecordText({ ...record, cost_usd: Number.NaN })).toThrow(TypeError);
  });
});
