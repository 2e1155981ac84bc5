import type { VaultKeyView } from '../api';
import { usd } from '../format';
import { spendAgainstCap } from '../spend';

/** Width in the bar's 0..100 viewBox of `part` of `whole`, clamped. */
function share(part: number, whole: number): number {
  return whole <= 0 ? 0 : Math.max(0, Math.min(100, (part / whole) * 100));
}

/**
 * Spend (solid), reservations in flight (lighter) and unknown spend (hatched, part of spend) against
 * the binding cap, as SVG: its geometry is attributes, so the strict CSP needs no inline style.
 */
export function SpendBar({ vaultKey, wide = false }: { vaultKey: VaultKeyView; wide?: boolean }) {
  const spend = spendAgainstCap(vaultKey);
  const cap = spend.cap ?? 0;
  const spent = share(spend.spent, cap);
  const reserved = Math.min(100 - spent, share(spend.reserved, cap));
  const unknown = Math.min(spent, share(spend.unknown, cap));
  const ratio = cap > 0 ? spend.spent / cap : 0;
  const level = ratio >= 1 ? 'full' : ratio >= 0.8 ? 'high' : 'ok';
  const label =
    spend.cap === null
      ? `${usd(spend.spent)} spent, no cap`
      : `${usd(spend.spent)} of ${usd(spend.cap)} ${spend.kind === 'daily' ? 'today' : ''}`.trim();
  return (
    <div class={`spend ${wide ? 'spend-wide' : ''}`}>
      <svg
        class={`spend-bar spend-${level}`}
        viewBox="0 0 100 10"
        preserveAspectRatio="none"
        role="meter"
        aria-label="spend against cap"
        aria-valuemin={0}
        aria-valuemax={spend.cap ?? 0}
        aria-valuenow={spend.spent}
        data-spent={spend.spent}
        data-reserved={spend.reserved}
        data-cap={spend.cap ?? ''}
      >
        <rect class="spend-track" x="0" y="0" width="100" height="10" />
        <rect class="spend-spent" x="0" y="0" width={spent} height="10" />
        <rect class="spend-unknown" x={spent - unknown} y="0" width={unknown} height="10" />
        <rect class="spend-reserved" x={spent} y="0" width={reserved} height="10" />
      </svg>
      <span class="spend-label">{label}</span>
    </div>
  );
}
