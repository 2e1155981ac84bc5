import { describe, expect, it } from 'vitest';
import { smsEncoding, smsSegments } from '../src/vendors/twilio.js';

/**
 * Vectors from Twilio's published segment rules ("What the heck is a segment?", and the test
 * messages of Twilio's open-source Message Segment Calculator): 160 GSM-7 septets or 70 UCS-2
 * code units in one segment; 153 or 67 per segment once split; an extension character takes two
 * septets and, like a surrogate pair or a grapheme cluster, is never split across segments.
 */
describe('issue 17: Twilio segment counting', () => {
  const family = '\u{1F468}\u200D\u{1F469}\u200D\u{1F467}\u200D\u{1F466}'; // 11 code units, one cluster

  it.each([
    ['empty body', '', 1],
    ['160 GSM-7 characters', 'a'.repeat(160), 1],
    ['161 GSM-7 characters', 'a'.repeat(161), 2],
    ['306 GSM-7 characters', 'a'.repeat(306), 2],
    ["Twilio calculator's 307-character GSM-7 message", '1234567890'.repeat(30) + '1234567', 3],
    ['159 characters and one extension character (161 septets)', `${'a'.repeat(159)}€`, 2],
    ['158 characters and one extension character (160 septets)', `${'a'.repeat(158)}€`, 1],
    ['an extension character never split: 152 + € + 152 (306 septets)', `${'a'.repeat(152)}€${'a'.repeat(152)}`, 3],
    ['70 UCS-2 characters', 'ж'.repeat(70), 1],
    ['71 UCS-2 characters', 'ж'.repeat(71), 2],
    ['134 UCS-2 characters', 'ж'.repeat(134), 2],
    ['135 UCS-2 characters', 'ж'.repeat(135), 3],
    ['a surrogate pair never split: ā×66 + 😀 + ā×66', `${'ā'.repeat(66)}😀${'ā'.repeat(66)}`, 3],
    ["Twilio calculator's UCS-2 message: 😜 and 133 digits", `😜${'2345678901'.repeat(13)}234`, 3],
    ['35 emoji (70 code units)', '😀'.repeat(35), 1],
    ['36 emoji (72 code units)', '😀'.repeat(36), 2],
    ['one character outside GSM-7 makes the whole message UCS-2', `\`${'a'.repeat(70)}`, 2],
    ['a cluster never split: 6 family emoji of 11 code units', family.repeat(6), 1],
    ['a cluster never split: 7 family emoji (77 units; 6 fill a 67-unit segment)', family.repeat(7), 2],
    ['20 clusters of a letter and 35 combining marks (36 units each)', `a${'\u0301'.repeat(35)}`.repeat(20), 20],
  ])('%s', (_name, body, segments) => {
    expect(smsSegments(body)).toBe(segments);
  });

  it('encodes in GSM-7 only when every character is in the GSM 03.38 tables, as one code unit', () => {
    expect(smsEncoding('Hello {world} €5 @ £3 ÄÖÑÜ')).toBe('GSM-7');
    expect(smsEncoding('backtick `')).toBe('UCS-2');
    expect(smsEncoding('ā')).toBe('UCS-2');
    // "\r\n" is one grapheme cluster of two code units: Twilio's calculator sends it as UCS-2.
    expect(smsEncoding('a\r\nb')).toBe('UCS-2');
  });
});
