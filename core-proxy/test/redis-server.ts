import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './ports.js';

const run = promisify(execFile);

/** A real redis-server (Debian's), durable as the README asks: AOF with fsync on every write. */
export interface RedisServer {
  readonly port: number;
  readonly url: string;
  /** Stops it (data kept in its folder). */
  stop(): Promise<void>;
  /** Starts it again on the same port and folder. */
  start(): Promise<void>;
  /** Runs redis-cli against it. */
  cli(...args: string[]): Promise<string>;
}

async function waitForPing(port: number): Promise<void> {
  for (let i = 0; i < 200; i += 1) {
    try {
      const { stdout } = await run('redis-cli', ['-p', String(port), 'ping']);
      if (stdout.trim() === 'PONG') return;
    } catch {
      // not up yet
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`redis-server on ${port} did not start`);
}

/** Starts redis-server on a free port, in `dir` or a temporary folder. */
export async function startRedis(
  extraArgs: string[] = [],
  dir = mkdtempSync(join(tmpdir(), 'keybrake-redis-')),
): Promise<RedisServer> {
  const port = await freePort();
  let child: ChildProcess | undefined;
  const start = async (): Promise<void> => {
    child = spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--dir',
        dir,
        '--save',
        '',
        '--appendonly',
        'yes',
        '--appendfsync',
        'always',
        ...extraArgs,
      ],
      { stdio: 'ignore' },
    );
    await waitForPing(port);
  };
  await start();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    start,
    stop: () =>
      new Promise<void>((resolve) => {
        if (!child || child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
    cli: async (...args) => (await run('redis-cli', ['-p', String(port), ...args])).stdout.trim(),
  };
}

/** A Redis Cluster of three masters on free ports, created with `redis-cli --cluster create`. */
export interface RedisCluster {
  readonly url: string;
  readonly nodes: readonly RedisServer[];
  stop(): Promise<void>;
}

export async function startRedisCluster(): Promise<RedisCluster> {
  const nodes: RedisServer[] = [];
  for (let i = 0; i < 3; i += 1) {
    nodes.push(
      await startRedis([
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        `nodes-${i}.conf`,
        '--cluster-node-timeout',
        '2000',
      ]),
    );
  }
  await run('redis-cli', [
    '--cluster',
    'create',
    ...nodes.map((n) => `127.0.0.1:${n.port}`),
    '--cluster-replicas',
    '0',
    '--cluster-yes',
  ]);
  for (let i = 0; i < 200; i += 1) {
    const states = await Promise.all(nodes.map((n) => n.cli('cluster', 'info')));
    if (states.every((state) => state.includes('cluster_state:ok'))) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    url: `redis+cluster://${nodes.map((n) => `127.0.0.1:${n.port}`).join(',')}`,
    nodes,
    stop: async () => {
      await Promise.all(nodes.map((n) => n.stop()));
    },
  };
}
