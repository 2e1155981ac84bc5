// Writes idempotency-keys.json: the inputs below with the key the TypeScript client derives for
// each (integrations/client, built). Run once after changing the inputs, and commit the result:
// the TypeScript tests (integrations/client/test/idempotency-vectors.test.ts) and the Python tests
// (integrations/python/tests/test_idempotency_vectors.py) both assert against the file.
//   pnpm run build && node integrations/test-vectors/generate-idempotency-keys.mjs
import { writeFileSync } from 'node:fs';
import { deriveIdempotencyKey } from '../client/dist/idempotency.js';

const inputs = [
  { name: 'one part', parts: ['charge'] },
  { name: 'Temporal identity', parts: ['billing-wf-42', '7', 'charge', 'cus_123'] },
  {
    name: 'Conductor identity',
    parts: ['conductor', '2f9c1c52-0b0e-4a3b-9d51-6a1f0e2d3c4b', 'charge_customer__3', 'charge', 'cus_3'],
  },
  { name: 'an empty part', parts: [''] },
  { name: 'empty parts around a part', parts: ['', 'x', ''] },
  { name: 'order matters (1)', parts: ['a', 'b'] },
  { name: 'order matters (2)', parts: ['b', 'a'] },
  { name: 'a separator inside a part is not a part boundary (1)', parts: ['a,b'] },
  { name: 'a separator inside a part is not a part boundary (2)', parts: ['a', 'b'] },
  { name: 'JSON punctuation in parts', parts: ['["a","b"]', '"', '\\', ':', ','] },
  { name: 'a part that looks like the next part joined', parts: ['a","b'] },
  {
    name: 'control characters',
    parts: ['tab\there', 'new\nline', 'nul\u0000', 'bell\u0007', 'del\u007f', 'cr\r', 'ff\f', 'bs\b'],
  },
  { name: 'unicode: accents and CJK', parts: ['café', 'naïve', '東京', 'Ünïcödé'] },
  { name: 'unicode: emoji outside the BMP', parts: ['💳', '👩🏽‍💻', '𝔘𝔫𝔦𝔠𝔬𝔡𝔢'] },
  { name: 'unicode: line and paragraph separators', parts: ['\u2028', '\u2029'] },
  { name: 'unicode: combining vs precomposed (not normalized)', parts: ['e\u0301', '\u00e9'] },
  { name: 'unicode: a lone surrogate', parts: ['\ud800', 'x\udfffy'] },
  { name: 'whitespace is kept', parts: [' padded ', '  '] },
  { name: 'a long part (10,000 characters)', parts: ['x'.repeat(10_000)] },
  { name: 'many parts', parts: Array.from({ length: 200 }, (_, i) => `part-${i}`) },
  { name: 'a long unicode part', parts: ['€'.repeat(3000)] },
  { name: 'integers', parts: [0, 1, -1, 42, 9007199254740991] },
  { name: 'an integer and its string are the same part', parts: ['42'] },
  { name: 'an integer and its string are the same part (number)', parts: [42] },
  {
    name: 'floats as JavaScript prints them',
    parts: [1.5, 0.1, -2.25, 1e21, 1e-7, 123456789012345680000, 0.000001, 100, 1.0],
  },
];

const vectors = inputs.map((input) => ({ ...input, expected: deriveIdempotencyKey(input.parts) }));
const file = new URL('./idempotency-keys.json', import.meta.url);
writeFileSync(
  file,
  `${JSON.stringify(
    {
      description:
        'deriveIdempotencyKey(parts) / derive_idempotency_key(parts): expected values generated from the TypeScript client by generate-idempotency-keys.mjs. Both test suites assert against this file.',
      vectors,
    },
    null,
    2,
  )}\n`,
);
console.log(`wrote ${vectors.length} vectors to ${file.pathname}`);
