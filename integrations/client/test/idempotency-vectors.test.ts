import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { deriveIdempotencyKey } from '../src/index.js';

/** The vectors the Python package's tests read too (integrations/python/tests/test_idempotency_vectors.py). */
const file = new URL('../../test-vectors/idempotency-keys.json', import.meta.url);
const { vectors } = JSON.parse(readFileSync(file, 'utf8')) as {
  vectors: { name: string; parts: (string | number)[]; expected: string }[];
};

describe('issue 24: deriveIdempotencyKey matches the shared vectors (the Python client asserts the same file)', () => {
  it('has vectors for unicode, empty parts, long parts and separators', () => {
    const names = vectors.map((vector) => vector.name).join('\n');
    for (const topic of ['unicode', 'empty part', 'long part', 'separator']) expect(names).toContain(topic);
  });

  it.each(vectors.map((vector) => [vector.name, vector] as const))('%s', (_name, vector) => {
    expect(deriveIdempotencyKey(vector.parts)).toBe(vector.expected);
    expect(vector.expected).toMatch(/^kb_[A-Za-z0-9_-]{43}$/);
  });

  it('tells different parts apart and the same parts alike', () => {
    const byName = new Map(vectors.map((vector) => [vector.name, vector.expected]));
    expect(byName.get('order matters (1)')).not.toBe(byName.get('order matters (2)'));
    expect(byName.get('a separator inside a part is not a part boundary (1)')).not.toBe(
      byName.get('a separator inside a part is not a part boundary (2)'),
    );
    expect(byName.get('an integer and its string are the same part')).toBe(
      byName.get('an integer and its string are the same part (number)'),
    );
    expect(new Set(vectors.map((vector) => vector.expected)).size).toBe(vectors.length - 2);
  });
});
