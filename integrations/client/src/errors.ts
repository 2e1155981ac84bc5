/**
 * Errors of the Keybrake client. `code` is the proxy's `error.code` (see the wire contract).
 */

/** An error answer from the Keybrake admin API or proxy. */
export class KeybrakeApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/**
 * The vault key's dollar cap is exhausted (429 with `X-Keybrake-Cap-Hit: true`). Terminal: a retry
 * hits the same wall, so integrations turn it into a never-retried failure.
 */
export class CapExhaustedError extends KeybrakeApiError {
  /** The vendor the call was for, when known. */
  readonly vendor: string | undefined;

  constructor(message = 'The vault key cap is exhausted; nothing was forwarded.', vendor?: string) {
    super(429, 'cap_exhausted', message);
    this.vendor = vendor;
  }
}

/**
 * The token file of {@link fromTokenFile} cannot give a token (missing, unreadable, empty, or not
 * one header-safe token). Carries the path only: never the file's text.
 */
export class TokenFileError extends Error {
  /** Stable code, as the proxy's `error.code`s. */
  readonly code = 'token_file_unreadable';

  constructor(
    readonly path: string,
    reason: string,
  ) {
    super(`${reason} (${path})`);
    this.name = new.target.name;
  }
}
