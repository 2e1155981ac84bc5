import { spawn, type ChildProcess } from 'node:child_process';

/** A running stripe-mock (Stripe's own API mock), on a free loopback port. */
export interface StripeMock {
  readonly url: string;
  stop(): Promise<void>;
}

/**
 * Starts the stripe-mock binary installed by `scripts/install-stripe-mock.sh` (path in
 * `STRIPE_MOCK_BIN`) on a port the OS chooses, and waits until it says where it listens.
 */
export async function startStripeMock(binary = process.env.STRIPE_MOCK_BIN): Promise<StripeMock> {
  if (!binary) {
    throw new Error(
      'STRIPE_MOCK_BIN is not set: run the tests with `pnpm test` (scripts/test.sh installs stripe-mock).',
    );
  }
  const child: ChildProcess = spawn(binary, ['-http-addr', '127.0.0.1:0', '-https-addr', '127.0.0.1:0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const url = await new Promise<string>((resolve, reject) => {
    let output = '';
    const onData = (chunk: Buffer): void => {
      output += chunk.toString();
      const match = /Listening for HTTP at address: (127\.0\.0\.1:\d+)/.exec(output);
      if (match) resolve(`http://${match[1]}`);
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => reject(new Error(`stripe-mock exited with ${code}: ${output}`)));
    setTimeout(() => reject(new Error(`stripe-mock did not start: ${output}`)), 20_000).unref();
  });
  return {
    url,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}
