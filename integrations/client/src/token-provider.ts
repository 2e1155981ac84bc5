import { readFile, stat } from 'node:fs/promises';
import { TokenFileError } from './errors.js';

/**
 * Where the client gets the bearer it sends on the admin API: called before every request, so a
 * rotated credential is picked up without a restart. Issue 25: a workload identity token (a
 * Kubernetes projected service-account token, an OIDC access token) instead of an issuer key.
 */
export type TokenProvider = () => string | Promise<string>;

/** Options of {@link fromTokenFile}. */
export interface TokenFileOptions {
  /**
   * Also re-read the file when it looks unchanged but this long has passed since the last read,
   * in case a writer replaced it in place within the file system's timestamp resolution.
   * @default 60000
   */
  readonly maxAgeMs?: number;
}

/** What identifies one version of the file: a rotation changes at least one of these. */
interface FileVersion {
  readonly dev: number;
  readonly ino: number;
  readonly size: number;
  readonly mtimeMs: number;
  readonly ctimeMs: number;
}

/**
 * A {@link TokenProvider} (always async) that reads a token from a file and reads it again whenever the file
 * changes. Kubernetes rotates a projected service-account token by writing a new timestamped
 * folder and renaming the `..data` symlink over to it (an atomic swap); the token path is a
 * symlink through `..data`, so `stat` (which follows symlinks) sees another inode. The check is a
 * `stat` on each use, not `fs.watch`: a watch on a symlink watches its old target and misses the
 * swap, and the check costs one system call per admin request.
 *
 * The token's text never appears in an error or a log line: only the path does.
 * @param path e.g. `/var/run/secrets/keybrake/token`
 */
export function fromTokenFile(path: string, options: TokenFileOptions = {}): () => Promise<string> {
  const maxAgeMs = options.maxAgeMs ?? 60_000;
  let cached: { version: FileVersion; token: string; readAt: number } | undefined;
  let reading: Promise<string> | undefined;

  async function read(): Promise<string> {
    let version: FileVersion;
    let text: string;
    try {
      // stat before reading: if the file is swapped between the two, the next call sees a new
      // version and reads again, so a stale token is never kept.
      version = versionOf(await stat(path));
      if (cached !== undefined && sameVersion(cached.version, version) && Date.now() - cached.readAt < maxAgeMs) {
        return cached.token;
      }
      text = await readFile(path, 'utf8');
    } catch (error) {
      throw new TokenFileError(path, `cannot read the token file: ${(error as NodeJS.ErrnoException).code ?? 'error'}`);
    }
    const token = text.trim();
    if (token === '') throw new TokenFileError(path, 'the token file is empty');
    // A header value cannot hold a line break or a control character: refuse rather than send
    // a mangled header (and never quote the text back).
    // eslint-disable-next-line no-control-regex
    if (/[\s\u0000-\u001f\u007f]/.test(token)) {
      throw new TokenFileError(path, 'the token file holds whitespace or control characters inside the token');
    }
    cached = { version, token, readAt: Date.now() };
    return token;
  }

  return () => {
    // Concurrent requests share one read rather than racing several.
    reading ??= read().finally(() => {
      reading = undefined;
    });
    return reading;
  };
}

function versionOf(stats: { dev: number; ino: number; size: number; mtimeMs: number; ctimeMs: number }): FileVersion {
  return { dev: stats.dev, ino: stats.ino, size: stats.size, mtimeMs: stats.mtimeMs, ctimeMs: stats.ctimeMs };
}

function sameVersion(a: FileVersion, b: FileVersion): boolean {
  return a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeMs === b.mtimeMs && a.ctimeMs === b.ctimeMs;
}
