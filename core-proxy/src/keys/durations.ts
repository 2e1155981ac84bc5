import { InvalidRequestError } from '../errors.js';

/** The longest TTL a vault key may have: 7 days. */
export const MAX_TTL_SECONDS = 7 * 24 * 60 * 60;

const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400 };

/**
 * Parses `expires_in`: `"90s"`, `"30m"`, `"2h"`, `"1d"` or a whole number of seconds.
 * @throws InvalidRequestError when malformed, not positive, or longer than 7 days.
 */
export function parseExpiresIn(value: unknown): number {
  let seconds: number;
  if (typeof value === 'number') {
    seconds = value;
  } else if (typeof value === 'string') {
    const match = /^([1-9][0-9]{0,9})([smhd])$/.exec(value);
    if (!match) {
      throw new InvalidRequestError('expires_in must look like "90s", "30m", "2h", "1d" or be a number of seconds.');
    }
    seconds = Number(match[1]) * (UNIT_SECONDS[match[2] as string] as number);
  } else {
    throw new InvalidRequestError('expires_in is required.');
  }
  if (!Number.isInteger(seconds) || seconds <= 0) {
    throw new InvalidRequestError('expires_in must be a positive whole number of seconds.');
  }
  if (seconds > MAX_TTL_SECONDS) {
    throw new InvalidRequestError('expires_in may be at most 7 days.');
  }
  return seconds;
}
