import type { FastifyReply, FastifyRequest } from 'fastify';
import { KeybrakeError, PolicyRefusedError, UnauthorizedError } from '../errors.js';
import type { PolicyGrant } from '../identity/issuers-file.js';
import { type TokenVerifier, type WorkloadIdentity, looksLikeJwt } from '../identity/token-verifier.js';
import { matchesAnyApiKey } from '../keys/vault-keys.js';

/**
 * Who called the admin API: an operator with an issuer key (`KEYBRAKE_API_KEYS`: everything), or
 * a workload with a verified token (issue 25: what its policy grants, on `/vault/keys` routes).
 */
export type AdminCaller =
  | { readonly kind: 'operator' }
  | { readonly kind: 'workload'; readonly identity: WorkloadIdentity; readonly grant: PolicyGrant };

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the admin API's authentication hook. */
    adminCaller: AdminCaller;
  }
}

const OPERATOR: AdminCaller = { kind: 'operator' };

/** Options of {@link adminAuthHook}. */
export interface AdminAuthOptions {
  readonly apiKeyDigests: readonly Buffer[];
  /** Set when `KEYBRAKE_ISSUERS_FILE` is: bearer JWTs are verified by it. */
  readonly verifier: TokenVerifier | undefined;
}

/**
 * The admin API's `onRequest` hook. `Authorization: Bearer <credential>`: one of the issuer keys
 * (compared in constant time) is an operator; otherwise, with an issuers file, a credential shaped
 * as a JWT is verified (401 `token_*` when it does not verify, 403 `policy_no_match` when no
 * policy matches it); anything else is 401 `unauthorized`. A workload may use only the
 * `/vault/keys` routes (403 `policy_operator_only` elsewhere). The credential is never logged
 * (`authorization` is redacted) nor put in an error.
 */
export function adminAuthHook(options: AdminAuthOptions) {
  return async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const refuse = (error: KeybrakeError): FastifyReply => reply.code(error.statusCode).send(error.toJSON());
    const match = /^Bearer\s+(\S+)\s*$/i.exec(request.headers.authorization ?? '');
    const credential = match?.[1];
    if (credential !== undefined && matchesAnyApiKey(credential, options.apiKeyDigests)) {
      request.adminCaller = OPERATOR;
      return;
    }
    if (credential === undefined || options.verifier === undefined || !looksLikeJwt(credential)) {
      return void refuse(new UnauthorizedError());
    }
    try {
      const { identity, grant } = await options.verifier.verify(credential);
      request.adminCaller = { kind: 'workload', identity, grant };
    } catch (error) {
      if (error instanceof KeybrakeError) return void refuse(error);
      throw error;
    }
    const url = request.routeOptions.url ?? '';
    if (url !== '/vault/keys' && !url.startsWith('/vault/keys/')) {
      return void refuse(new PolicyRefusedError('policy_operator_only'));
    }
  };
}
