/**
 * How a policy matches a token's claims. A matcher names a claim by a dotted path into the
 * payload (`sub`, `email`, `kubernetes.io.namespace`, `kubernetes.io.serviceaccount.name`): a
 * claim whose own name holds dots (`kubernetes.io`) is found as well, the longest name first.
 * It expects a string, or a list of strings of which one must match:
 * - `argo` matches exactly `argo`;
 * - `system:serviceaccount:argo:*` (a trailing `*`) matches any value starting with
 *   `system:serviceaccount:argo:`. No other wildcard: a `*` elsewhere is refused when the file
 *   is loaded.
 * A claim that is a list (`aud`, `groups`) matches when one of its strings does; a claim that is
 * absent, or not a string, never matches.
 */
export interface ClaimMatcher {
  /** The dotted path, as written in the file. */
  readonly claim: string;
  readonly expected: readonly { readonly value: string; readonly prefix: boolean }[];
}

/**
 * Parses one `match` entry.
 * @param exactOnly refuse wildcards (for `iss`).
 * @throws Error with the problem.
 */
export function parseClaimMatcher(claim: string, expected: unknown, exactOnly = false): ClaimMatcher {
  if (!/^[^.\s]+(\.[^.\s]+)*$/.test(claim)) throw new Error('a claim path is names joined by ".".');
  const values = Array.isArray(expected) ? expected : [expected];
  if (values.length === 0) throw new Error('must be a string or a non-empty list of strings.');
  return {
    claim,
    expected: values.map((value) => {
      if (typeof value !== 'string' || value === '')
        throw new Error('must be a string or a non-empty list of strings.');
      const prefix = value.endsWith('*');
      const literal = prefix ? value.slice(0, -1) : value;
      if (literal.includes('*')) throw new Error(`"${value}": "*" is allowed only at the end (a prefix).`);
      if (prefix && (exactOnly || literal === '')) throw new Error(`"${value}": a wildcard is not allowed here.`);
      return { value: literal, prefix };
    }),
  };
}

/** The claim at a dotted path, trying the longest own property name first at each level. */
export function claimAt(payload: unknown, path: string): unknown {
  const find = (node: unknown, parts: readonly string[]): unknown => {
    if (parts.length === 0) return node;
    if (!node || typeof node !== 'object' || Array.isArray(node)) return undefined;
    for (let take = parts.length; take >= 1; take -= 1) {
      const name = parts.slice(0, take).join('.');
      if (Object.hasOwn(node, name)) {
        const found = find((node as Record<string, unknown>)[name], parts.slice(take));
        if (found !== undefined) return found;
      }
    }
    return undefined;
  };
  return find(payload, path.split('.'));
}

/** Whether a token's payload satisfies one matcher. */
export function matchesClaim(matcher: ClaimMatcher, payload: unknown): boolean {
  const claim = claimAt(payload, matcher.claim);
  const values = Array.isArray(claim) ? claim : [claim];
  return values.some(
    (value) =>
      typeof value === 'string' &&
      matcher.expected.some((expected) =>
        expected.prefix ? value.startsWith(expected.value) : value === expected.value,
      ),
  );
}
