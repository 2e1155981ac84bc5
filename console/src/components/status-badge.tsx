import type { VaultKeyView } from '../api';

/** The key's status, and whether it is tainted, as small badges. */
export function StatusBadge({ vaultKey }: { vaultKey: VaultKeyView }) {
  return (
    <span class="badges">
      <span class={`badge status-${vaultKey.status}`} data-status={vaultKey.status}>
        {vaultKey.status}
      </span>
      {vaultKey.tainted && <span class="badge tainted">tainted</span>}
    </span>
  );
}
