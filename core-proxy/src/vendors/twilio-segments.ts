/**
 * SMS segmentation as Twilio bills it (see Twilio's "What the heck is a segment?" and its open
 * source Message Segment Calculator):
 * - A message is GSM-7 when every character is in the GSM 03.38 basic table (7 bits) or its
 *   extension table (an escape plus the character: 14 bits); otherwise the whole message is UCS-2
 *   (16 bits per UTF-16 code unit).
 * - One segment carries 140 bytes: 160 GSM-7 septets or 70 UCS-2 code units. A longer message is
 *   sent as several segments, each losing 6 bytes to the concatenation header: 153 septets or 67
 *   code units each.
 * - A character is never split across segments: not an extension character's two septets, not a
 *   surrogate pair, not a grapheme cluster (a base character with its combining marks, an emoji
 *   sequence). A segment that cannot take the next character whole ends early.
 */

/** The GSM 03.38 basic character set (7 bits each). */
const GSM_BASIC = new Set(
  '@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !"#¤%&\'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà',
);
/** The GSM 03.38 extension table: an escape septet plus the character (14 bits each). */
const GSM_EXTENDED = new Set('^{}\\[~]|€\f');

const SEGMENT_BITS = 140 * 8;
const CONCATENATED_SEGMENT_BITS = (140 - 6) * 8;

const graphemes = new Intl.Segmenter(undefined, { granularity: 'grapheme' });

/** The encoding Twilio sends a body in. */
export function smsEncoding(body: string): 'GSM-7' | 'UCS-2' {
  for (const { segment } of graphemes.segment(body)) {
    // A cluster of several code units (e.g. "\r\n", a letter with a combining mark) is UCS-2.
    if (segment.length !== 1 || !(GSM_BASIC.has(segment) || GSM_EXTENDED.has(segment))) return 'UCS-2';
  }
  return 'GSM-7';
}

/** The size in bits of each unit that may not be split across segments. */
function unitSizes(body: string, encoding: 'GSM-7' | 'UCS-2', capacity: number): number[] {
  const sizes: number[] = [];
  for (const { segment } of graphemes.segment(body)) {
    if (encoding === 'GSM-7') {
      sizes.push(GSM_EXTENDED.has(segment) ? 14 : 7);
      continue;
    }
    const bits = segment.length * 16;
    if (bits <= capacity) {
      sizes.push(bits);
    } else {
      // A cluster longer than a segment must be split; it splits between code points.
      for (const codePoint of segment) sizes.push(codePoint.length * 16);
    }
  }
  return sizes;
}

/** How many segments Twilio bills for a body (at least 1: an empty body is still a message). */
export function smsSegments(body: string): number {
  const encoding = smsEncoding(body);
  const single = unitSizes(body, encoding, SEGMENT_BITS);
  if (single.reduce((sum, bits) => sum + bits, 0) <= SEGMENT_BITS) return 1;
  let segments = 1;
  let free = CONCATENATED_SEGMENT_BITS;
  for (const bits of unitSizes(body, encoding, CONCATENATED_SEGMENT_BITS)) {
    if (bits > free) {
      segments += 1;
      free = CONCATENATED_SEGMENT_BITS;
    }
    free -= bits;
  }
  return segments;
}
