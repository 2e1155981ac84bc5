import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../../core-proxy/test/ports.js';

/** A running Conductor OSS server (the real one, from Maven Central) on a loopback port. */
export interface ConductorServer {
  /** The API base, e.g. `http://127.0.0.1:41234/api`. */
  readonly apiUrl: string;
  stop(): Promise<void>;
}

export interface ConductorServerOptions {
  /** The boot jar (`scripts/install-conductor.sh` prints it). */
  readonly jar: string;
  /** A Java 21+ binary. */
  readonly java: string;
  /**
   * Server environment: Conductor resolves `${workflow.env.NAME}` from `CONDUCTOR_ENV_NAME` and
   * `${workflow.secrets.NAME}` from `CONDUCTOR_SECRET_NAME`.
   */
  readonly env: Record<string, string>;
}

/**
 * Starts Conductor with its embedded SQLite store in a fresh directory and waits for `/health`.
 * The AI integrations are off: they only log errors about missing API keys.
 */
export async function startConductorServer(options: ConductorServerOptions): Promise<ConductorServer> {
  const dir = mkdtempSync(join(tmpdir(), 'keybrake-conductor-'));
  const port = await freePort();
  const properties = join(dir, 'conductor.properties');
  writeFileSync(
    properties,
    [
      `server.port=${port}`,
      `server.address=127.0.0.1`,
      `spring.datasource.url=jdbc:sqlite:${join(dir, 'conductor.db')}?busy_timeout=15000&journal_mode=WAL`,
      'conductor.integrations.ai.enabled=false',
      'conductor.scheduler.enabled=false',
      '',
    ].join('\n'),
  );
  const logFile = join(dir, 'server.log');
  const child: ChildProcess = spawn(
    options.java,
    ['-Xms256m', '-Xmx1g', '-jar', options.jar, `--spring.config.additional-location=file:${properties}`],
    { cwd: dir, env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let log = '';
  const append = (chunk: Buffer): void => {
    log += chunk.toString();
  };
  child.stdout?.on('data', append);
  child.stderr?.on('data', append);
  const apiUrl = `http://127.0.0.1:${port}/api`;
  const deadline = Date.now() + 180_000;
  for (;;) {
    if (child.exitCode !== null) {
      writeFileSync(logFile, log);
      throw new Error(`Conductor exited with ${child.exitCode} while starting; log: ${logFile}\n${log.slice(-2000)}`);
    }
    const healthy = await fetch(`http://127.0.0.1:${port}/health`)
      .then((response) => response.ok)
      .catch(() => false);
    if (healthy) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`Conductor did not become healthy in 180 s:\n${log.slice(-2000)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  return {
    apiUrl,
    stop: async () => {
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
        await exited;
        clearTimeout(timer);
      }
      if (process.env.KEYBRAKE_KEEP_CONDUCTOR_LOG) {
        writeFileSync(logFile, log);
        console.log(`Conductor log kept at ${logFile}`);
      } else {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
