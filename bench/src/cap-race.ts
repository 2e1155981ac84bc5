import { Agent } from 'undici';
import { PAYMENT_BODY } from './variants.js';

/** What a cap race left behind. Money in USD. */
export interface CapRaceResult {
  readonly calls: number;
  readonly capUsd: number;
  readonly forwarded: number;
  readonly forwardedUsd: number;
  readonly refused: number;
  /** Forwarded beyond the cap: must be 0. */
  readonly overshootUsd: number;
  /** Cap left unspent. */
  readonly underUseUsd: number;
  /** The smallest refused charge: under-use below it is unavoidable. */
  readonly smallestRefusedUsd: number | null;
  readonly seconds: number;
}

/**
 * `calls` charges of random amounts ($1.00-$5.00) fired at once at one key with a `capUsd` cap,
 * spread over the proxies given (replicas of one store).
 */
export async function capRace(
  proxyUrls: readonly string[],
  vaultKey: string,
  capUsd: number,
  calls = 2000,
): Promise<CapRaceResult> {
  const dispatcher = new Agent({ connections: 512 });
  const amounts = Array.from({ length: calls }, () => 100 + Math.floor(Math.random() * 401));
  const started = performance.now();
  const statuses = await Promise.all(
    amounts.map(async (amount, i) => {
      const url = proxyUrls[i % proxyUrls.length]!;
      const response = await fetch(`${url}/stripe/v1/payment_intents`, {
        method: 'POST',
        headers: { authorization: `Bearer ${vaultKey}`, 'content-type': 'application/x-www-form-urlencoded' },
        body: PAYMENT_BODY.replace('amount=100', `amount=${amount}`),
        // @ts-expect-error undici's dispatcher option on Node's fetch
        dispatcher,
      });
      await response.arrayBuffer();
      return response.status;
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  await dispatcher.close();
  const forwardedCents = amounts.filter((_, i) => statuses[i] === 200).reduce((sum, cents) => sum + cents, 0);
  const refused = amounts.filter((_, i) => statuses[i] === 429);
  const unexpected = statuses.filter((status) => status !== 200 && status !== 429);
  if (unexpected.length > 0) throw new Error(`cap race: unexpected statuses ${[...new Set(unexpected)].join(', ')}`);
  const forwardedUsd = forwardedCents / 100;
  return {
    calls,
    capUsd,
    forwarded: calls - refused.length,
    forwardedUsd,
    refused: refused.length,
    overshootUsd: Math.max(0, Math.round((forwardedUsd - capUsd) * 100) / 100),
    underUseUsd: Math.max(0, Math.round((capUsd - forwardedUsd) * 100) / 100),
    smallestRefusedUsd: refused.length > 0 ? Math.min(...refused) / 100 : null,
    seconds,
  };
}
