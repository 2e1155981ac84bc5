/**
 * Whether a run label is canonical, as a policy's `label_prefix` compares it: in Unicode NFKC
 * form, with no `%` or `\` (nothing decodes to something else), and no empty, `.` or `..` segment
 * between its `/`s (only the last may be empty: `argo/billing/`). So `argo/billing/../x`,
 * `argo/billing/%2e%2e/x`, `argo//billing/x` and a full-width `ａrgo/billing/x` never pass as
 * being under `argo/billing/`: a label is compared as written, and only a canonical one is.
 */
export function isCanonicalLabel(label: string): boolean {
  if (label.normalize('NFKC') !== label || /[%\\]/.test(label)) return false;
  const segments = label.split('/');
  return segments.every(
    (segment, i) => segment !== '.' && segment !== '..' && (segment !== '' || i === segments.length - 1),
  );
}

/** Whether a label is canonical and starts with a (canonical) prefix. */
export function isUnderLabelPrefix(label: string, prefix: string): boolean {
  return isCanonicalLabel(label) && label.startsWith(prefix);
}
