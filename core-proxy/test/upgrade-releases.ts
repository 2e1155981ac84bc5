import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** An earlier release the upgrade tests start from (scripts/upgrade-releases.txt). */
export interface Release {
  readonly commit: string;
  readonly short: string;
  /** Why this one, as the file says. */
  readonly why: string;
}

/** The releases of scripts/upgrade-releases.txt, oldest first. */
export const RELEASES: readonly Release[] = readFileSync(join(ROOT, 'scripts/upgrade-releases.txt'), 'utf8')
  .split('\n')
  .filter((line) => /^[0-9a-f]{40}\s/.test(line))
  .map((line) => {
    const [commit, ...why] = line.split(/\s+/);
    return { commit: commit as string, short: (commit as string).slice(0, 7), why: why.join(' ') };
  });

/**
 * The release's built CLI (`core-proxy/dist/cli.js`), built by scripts/build-release.sh (once per
 * commit: `scripts/test.sh` has built it before the suite starts, so this only prints the folder).
 */
export async function releaseCli(release: Release): Promise<string> {
  const { stdout } = await run('bash', [join(ROOT, 'scripts/build-release.sh'), release.commit], {
    cwd: ROOT,
    maxBuffer: 64 * 1024 * 1024,
  });
  return join(stdout.trim().split('\n').at(-1) as string, 'core-proxy/dist/cli.js');
}
