/** Issue 25: who a key was issued to, as a verified token said (never the token itself). */
export interface KeyIdentity {
  /** The token's `iss`. */
  readonly issuer: string;
  /** The token's `sub`. */
  readonly subject: string;
  /** The policy of the issuers file that matched it. */
  readonly policy: string;
}

/**
 * Issue 25: a key's workload identity as both stores keep it, one JSON text (`{"issuer", "subject",
 * "policy"}`); the empty text or null for a key issued with an issuer key.
 */
export function identityText(identity: KeyIdentity | null | undefined): string | null {
  return identity
    ? JSON.stringify({ issuer: identity.issuer, subject: identity.subject, policy: identity.policy })
    : null;
}

/** The identity a stored text holds; null for none. */
export function identityOfText(text: string | null | undefined): KeyIdentity | null {
  if (!text) return null;
  const { issuer, subject, policy } = JSON.parse(text) as KeyIdentity;
  return { issuer, subject, policy };
}
