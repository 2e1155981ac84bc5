import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { runExec } from './exec.js';

const USAGE = `keybrake-exec: run a program that calls vendors through Keybrake

  keybrake-exec [--proxy-url URL] [--vault-key-file FILE] [--idempotency-part P]... -- PROGRAM [ARGS...]

The program gets KEYBRAKE_PROXY_URL (a loopback relay to the proxy), KEYBRAKE_VAULT_KEY and
KEYBRAKE_IDEMPOTENCY_KEY (derived from the --idempotency-part values, else inherited). If it exits
non-zero after Keybrake refused one of its calls for good, this exits with that refusal's code:
75 cap_exhausted, 76 tainted_request_refused, 77 endpoint_not_allowed, 78 vendor_mismatch,
79 vault_key_revoked, 80 vault_key_expired, 81 invalid_vault_key. Otherwise with the program's code.

  --proxy-url URL         the proxy (default: KEYBRAKE_PROXY_URL, then KEYBRAKE_URL)
  --vault-key-file FILE   read the vault key from a file, e.g. a mounted Secret (default: KEYBRAKE_VAULT_KEY)
  --idempotency-part P    a part of the call's identity, e.g. {{workflow.uid}}, {{steps.name}}, {{item}}
`;

/** Exit code of exec used wrongly. */
const EXIT_USAGE = 2;

/** The `keybrake-exec` bin: returns the exit code. */
export async function execCommand(argv: readonly string[]): Promise<number> {
  const separator = argv.indexOf('--');
  const own = separator === -1 ? argv : argv.slice(0, separator);
  const command = separator === -1 ? [] : argv.slice(separator + 1);
  let values: { 'proxy-url'?: string; 'vault-key-file'?: string; 'idempotency-part'?: string[]; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: [...own],
      options: {
        'proxy-url': { type: 'string' },
        'vault-key-file': { type: 'string' },
        'idempotency-part': { type: 'string', multiple: true },
        help: { type: 'boolean' },
      },
    }));
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n${USAGE}`);
    return EXIT_USAGE;
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const [program, ...args] = command;
  if (program === undefined) {
    process.stderr.write(`keybrake-exec: no program given after --\n${USAGE}`);
    return EXIT_USAGE;
  }
  const proxyUrl = values['proxy-url'] ?? process.env.KEYBRAKE_PROXY_URL ?? process.env.KEYBRAKE_URL;
  if (!proxyUrl) {
    process.stderr.write('keybrake-exec: set --proxy-url or KEYBRAKE_PROXY_URL\n');
    return EXIT_USAGE;
  }
  let vaultKey: string | undefined;
  if (values['vault-key-file'] !== undefined) {
    try {
      vaultKey = readFileSync(values['vault-key-file'], 'utf8').trim();
    } catch (error) {
      process.stderr.write(`keybrake-exec: cannot read the vault key file: ${(error as Error).message}\n`);
      return EXIT_USAGE;
    }
  }
  const outcome = await runExec({
    command: [program, ...args],
    proxyUrl,
    vaultKey,
    idempotencyParts: values['idempotency-part'],
  });
  return outcome.exitCode;
}
