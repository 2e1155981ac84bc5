import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it, onTestFinished } from 'vitest';
import { CLI, serverEnvironment, spawnServer } from './server-process.js';

/** The accept-queue size the kernel gives a listening socket on `port`: `ss` shows it as Send-Q. */
function listenBacklog(port: number): number {
  const line = execFileSync('ss', ['-Hltn', `sport = :${port}`], { encoding: 'utf8' }).trim();
  const [, , sendQ] = line.split(/\s+/);
  return Number(sendQ);
}

const SOMAXCONN = Number(readFileSync('/proc/sys/net/core/somaxconn', 'utf8'));

/**
 * Regression (found by cap-concurrency's 2,000 calls at once on a busy machine, which failed with
 * ECONNRESET or took 30 s): `keybrake serve` listened with Node's default backlog of 511, so a
 * fan-out burst overflowed the kernel's accept queue (10,016 ListenOverflows in one run of that
 * test); the dropped handshakes came back as seconds of SYN retransmits or as resets. The proxy now
 * asks for 4,096 (`KEYBRAKE_LISTEN_BACKLOG`), which the kernel caps at net.core.somaxconn.
 */
describe('overload: the listen backlog holds a fan-out burst', () => {
  const cases: { name: string; args: string[]; env: Record<string, string>; expected: number }[] = [
    { name: 'serve, default', args: [], env: {}, expected: Math.min(4096, SOMAXCONN) },
    {
      name: 'serve, KEYBRAKE_LISTEN_BACKLOG=1000',
      args: [],
      env: { KEYBRAKE_LISTEN_BACKLOG: '1000' },
      expected: Math.min(1000, SOMAXCONN),
    },
    { name: 'serve --workers 2, default', args: ['--workers', '2'], env: {}, expected: Math.min(4096, SOMAXCONN) },
  ];
  it.each(cases)('$name', async ({ args, env, expected }) => {
    const server = await spawnServer(serverEnvironment(env).env, {
      command: [process.execPath, CLI, 'serve', ...args],
    });
    onTestFinished(async () => {
      server.child.kill('SIGTERM');
      await server.exited;
    });
    expect(expected).toBeGreaterThan(511);
    expect(listenBacklog(Number(new URL(server.url).port))).toBe(expected);
  });

  it('KEYBRAKE_LISTEN_BACKLOG must be a positive whole number', async () => {
    const server = spawnServer(serverEnvironment({ KEYBRAKE_LISTEN_BACKLOG: 'lots' }).env);
    await expect(server).rejects.toThrow(/KEYBRAKE_LISTEN_BACKLOG/);
  });
});
