import { describe, expect, it } from 'vitest';
import { smsEncoding, smsSegments } from '../src/vendors/twilio-segments.js';

/**
 * Twilio's rules (see twilio-segments.ts): GSM-7 carries 160 septets in one segment, 153 per
 * segment once split, an extension character taking 2; UCS-2 carries 70 UTF-16 code units, 67 per
 * segment once split; nothing indivisible (an extension character, a surrogate pair, a grapheme
 * cluster) is split across segments. The issue-17 test holds Twilio's published vectors; these rows
 * walk the boundaries of each rule.
 */
const flag = '\u{1F1EB}\u{1F1F7}'; // one cluster, 4 code units
const decomposedE = 'e\u0301'; // one cluster, 2 code units

describe('smsEncoding', () => {
  it.each<[string, string, 'GSM-7' | 'UCS-2']>([
    ['the empty body', '', 'GSM-7'],
    ['ASCII letters and digits', 'Hello 123', 'GSM-7'],
    ['the basic table’s accented letters', 'èéùìòÇØøÅåÄÖÑÜäöñüàß', 'GSM-7'],
    ['the basic table’s Greek capitals', 'ΔΦΓΛΩΠΨΣΘΞ', 'GSM-7'],
    ['the basic table’s currency and marks', '@£$¥¤§¿¡', 'GSM-7'],
    ['newline and carriage return on their own', 'a\nb\rc', 'GSM-7'],
    ['every extension character', '^{}\\[~]|€\f', 'GSM-7'],
    ['a lower-case c cedilla (only the capital is GSM)', 'ç', 'UCS-2'],
    ['a Greek lower-case letter', 'δ', 'UCS-2'],
    ['a backtick', '`', 'UCS-2'],
    ['a Cyrillic letter', 'ж', 'UCS-2'],
    ['an emoji', '😀', 'UCS-2'],
    ['a decomposed é (e + combining acute)', decomposedE, 'UCS-2'],
    ['CR LF: one cluster of two code units', 'a\r\nb', 'UCS-2'],
    ['one UCS-2 character at the end of a GSM body', `${'a'.repeat(200)}ā`, 'UCS-2'],
  ])('%s → %s', (_name, body, encoding) => {
    expect(smsEncoding(body)).toBe(encoding);
  });
});

describe('smsSegments at the boundaries of each rule', () => {
  it.each<[string, string, number]>([
    // GSM-7, one septet each
    ['1 GSM character', 'a', 1],
    ['160 £ (basic table, one septet each)', '£'.repeat(160), 1],
    ['161 £', '£'.repeat(161), 2],
    ['459 characters: exactly 3 × 153', 'a'.repeat(459), 3],
    ['460 characters', 'a'.repeat(460), 4],
    ['612 characters: exactly 4 × 153', 'a'.repeat(612), 4],
    // GSM-7 extension characters, two septets each, never split
    ['one €', '€', 1],
    ['80 € (160 septets)', '€'.repeat(80), 1],
    ['81 € (162 septets): 76 fit a 153-septet segment', '€'.repeat(81), 2],
    ['152 € (304 septets): 2 × 76', '€'.repeat(152), 2],
    ['153 € (306 septets = 2 × 153, but a pair is never split)', '€'.repeat(153), 3],
    ['152 + € + 151 (305 septets): the € opens segment 2', `${'a'.repeat(152)}€${'a'.repeat(151)}`, 2],
    ['153 + € + 151 (306 septets)', `${'a'.repeat(153)}€${'a'.repeat(151)}`, 2],
    // UCS-2, one code unit each
    ['70 δ', 'δ'.repeat(70), 1],
    ['71 δ', 'δ'.repeat(71), 2],
    ['201 ж: exactly 3 × 67', 'ж'.repeat(201), 3],
    ['202 ж', 'ж'.repeat(202), 4],
    // One character outside GSM-7 re-prices the whole body
    ['69 GSM + 1 UCS-2 (70 units)', `${'a'.repeat(69)}ж`, 1],
    ['70 GSM + 1 UCS-2 (71 units)', `${'a'.repeat(70)}ж`, 2],
    ['159 GSM + 1 UCS-2: 160 units, 3 segments where 160 GSM-7 would be 1', `${'a'.repeat(159)}ж`, 3],
    ['160 characters, the last a backtick (not GSM-7)', `${'a'.repeat(159)}\``, 3],
    // Surrogate pairs, never split
    ['68 ж + 😀 (70 units)', `${'ж'.repeat(68)}😀`, 1],
    ['69 ж + 😀 (71 units)', `${'ж'.repeat(69)}😀`, 2],
    ['66 ж + 😀 + 65 ж (133 units): the pair opens segment 2', `${'ж'.repeat(66)}😀${'ж'.repeat(65)}`, 2],
    ['66 ж + 😀 + 66 ж (134 units = 2 × 67, but the pair is never split)', `${'ж'.repeat(66)}😀${'ж'.repeat(66)}`, 3],
    // Grapheme clusters, never split
    ['17 flags (68 units)', flag.repeat(17), 1],
    ['18 flags (72 units): 16 fill a 67-unit segment', flag.repeat(18), 2],
    ['33 flags (132 units): 16 + 16 + 1', flag.repeat(33), 3],
    ['35 decomposed é (70 units)', decomposedE.repeat(35), 1],
    ['36 decomposed é (72 units)', decomposedE.repeat(36), 2],
    ['precomposed é stays GSM-7: 160 of them', 'é'.repeat(160), 1],
  ])('%s → %i', (_name, body, segments) => {
    expect(smsSegments(body)).toBe(segments);
  });
});
