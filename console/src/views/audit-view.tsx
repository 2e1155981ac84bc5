import { useEffect, useState } from 'preact/hooks';
import type { AdminClient, AuditCheckpoints, AuditVerification } from '../api';
import { clock } from '../format';

/** The audit view: the chain's verification, its latest signed checkpoint, and the export. */
export function AuditView({ client }: { client: AdminClient }) {
  const [verification, setVerification] = useState<AuditVerification | null>(null);
  const [checkpoints, setCheckpoints] = useState<AuditCheckpoints | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [exported, setExported] = useState<string | null>(null);

  const verify = async (): Promise<void> => {
    setBusy(true);
    try {
      const [result, signed] = await Promise.all([client.verifyAudit(), client.checkpoints()]);
      setVerification(result);
      setCheckpoints(signed);
      setError(null);
    } catch (caught) {
      setError((caught as Error).message);
    } finally {
      setBusy(false);
    }
  };

  // The export goes through fetch (the issuer key is a header, never a URL) into a Blob, which
  // the browser then saves from a same-page object URL.
  const download = async (): Promise<void> => {
    try {
      const blob = await client.exportAudit();
      const url = URL.createObjectURL(blob);
      const link = document.createElement('a');
      link.href = url;
      link.download = `keybrake-audit-${new Date().toISOString().replace(/[:.]/g, '-')}.jsonl`;
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
      setExported(`Exported ${blob.size.toLocaleString()} bytes.`);
    } catch (caught) {
      setExported(`Export failed: ${(caught as Error).message}`);
    }
  };

  useEffect(() => {
    void verify();
  }, [client]);

  const latest = checkpoints?.checkpoints.at(-1);
  return (
    <main class="audit-view">
      <h1>Audit chain</h1>
      {error !== null && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <section class="verify">
        {verification === null ? (
          <p>Verifying…</p>
        ) : verification.ok ? (
          <p class="chain-ok" data-verified="true">
            ✓ The chain verifies: {verification.records.toLocaleString()} records
            {verification.checkpoints !== undefined && `, ${verification.checkpoints} signed checkpoints`}
            {verification.untrusted_checkpoints ? ` (${verification.untrusted_checkpoints} by untrusted keys)` : ''}.
          </p>
        ) : (
          <p class="chain-bad" data-verified="false" role="alert">
            ✗ The chain is broken at record {verification.first_bad_seq}
            {verification.reason ? `: ${verification.reason}` : ''}.
          </p>
        )}
        {verification?.head && (
          <p class="mono muted">
            head <span data-field="head">{verification.head}</span>
          </p>
        )}
        <button type="button" disabled={busy} onClick={() => void verify()}>
          {busy ? 'Verifying…' : 'Verify again'}
        </button>
      </section>
      <section>
        <h2>Latest signed checkpoint</h2>
        {latest ? (
          <dl class="checkpoint">
            <dt>records</dt>
            <dd data-field="checkpoint-records">{latest.records.toLocaleString()}</dd>
            <dt>signed at</dt>
            <dd>{clock(latest.at)}</dd>
            <dt>head</dt>
            <dd class="mono">{latest.head}</dd>
            <dt>signing key</dt>
            <dd class="mono">{latest.key_id}</dd>
            <dt>signature</dt>
            <dd class="mono wrap">{latest.signature}</dd>
          </dl>
        ) : (
          <p class="muted">{checkpoints ? 'No checkpoint signed yet.' : '…'}</p>
        )}
        {checkpoints && (
          <details>
            <summary>Public key {checkpoints.public_key.key_id}</summary>
            <pre>{checkpoints.public_key.pem}</pre>
          </details>
        )}
      </section>
      <section>
        <h2>Export</h2>
        <p class="muted">
          Every record and checkpoint as JSON lines, verifiable offline with{' '}
          <code>keybrake audit verify-export FILE</code>.
        </p>
        <button type="button" onClick={() => void download()}>
          Download export
        </button>
        {exported !== null && <p role="status">{exported}</p>}
      </section>
    </main>
  );
}
