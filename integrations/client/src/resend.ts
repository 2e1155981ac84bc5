/**
 * Constructor options that point the official `resend` SDK at a Keybrake proxy. The SDK does not
 * throw on errors: a cap hit comes back as `{ data: null, error, headers }`, which `isCapHit`
 * recognises.
 *
 * @example new Resend(vaultKey, resendOptions('http://keybrake:8080'))
 */
export function resendOptions(proxyUrl: string): { baseUrl: string } {
  return { baseUrl: `${proxyUrl.replace(/\/+$/, '')}/resend` };
}
