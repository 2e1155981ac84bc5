import { spawn } from 'node:child_process';
import { freePort } from './ports.js';

/** A running go-httpbin (github.com/mccutchen/go-httpbin): echoes what it was sent as JSON. */
export interface GoHttpbin {
  readonly url: string;
  stop(): Promise<void>;
}

/**
 * Starts the go-httpbin binary installed by `scripts/install-httpbin.sh` (path in
 * `GO_HTTPBIN_BIN`) on a free loopback port, and waits until it answers. It cannot listen on
 * port 0 and say where, so a free port is picked first; a port taken meanwhile is retried.
 */
export async function startGoHttpbin(binary = process.env.GO_HTTPBIN_BIN): Promise<GoHttpbin> {
  if (!binary) {
    throw new Error('GO_HTTPBIN_BIN is not set: run the tests with `pnpm test` (scripts/test.sh installs go-httpbin).');
  }
  let lastOutput = '';
  for (let attempt = 0; attempt < 5; attempt += 1) {
    const port = await freePort();
    const child = spawn(binary, ['-host', '127.0.0.1', '-port', String(port), '-log-level', 'WARN'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const url = `http://127.0.0.1:${port}`;
    const stop = async (): Promise<void> => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    };
    // Readiness: the first answer to GET /get (no clock: it starts when it starts, or exits).
    for (;;) {
      if (child.exitCode !== null) break;
      try {
        const response = await fetch(`${url}/get`);
        await response.arrayBuffer();
        if (response.ok) return { url, stop };
      } catch {
        // Not listening yet.
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    lastOutput = output;
    await stop();
  }
  throw new Error(`go-httpbin did not start: ${lastOutput}`);
}
