import { existsSync } from 'node:fs';

/** Fails the project at once, with the fix, when the emulator is not installed. */
export default function setup(): void {
  const bin = process.env.WORKFLOWS_EMULATOR_BIN;
  if (!bin || !existsSync(bin)) {
    throw new Error(
      'WORKFLOWS_EMULATOR_BIN is not set or missing: run `pnpm e2e:cloud-workflows` (scripts/install-workflows-emulator.sh installs workflows-emulator 1.10.0).',
    );
  }
}
