import { randomUUID } from 'node:crypto';
import type { TestProject } from 'vitest/node';
import { freePort } from '../../../core-proxy/test/ports.js';
import { startConductorServer } from './conductor-server.js';

declare module 'vitest' {
  export interface ProvidedContext {
    conductorApiUrl: string;
    /** The port each test's proxy listens on: the Conductor server was told this URL. */
    keybrakeProxyPort: number;
    keybrakeProxyHost: string;
    /** The issuer key the Conductor server holds as the secret KEYBRAKE_ISSUER_KEY. */
    keybrakeIssuerKey: string;
  }
}

/**
 * One Conductor server for the run, told where the proxy will be (`KEYBRAKE_PROXY_URL`, an
 * environment variable of the server) and given the issuer key as a server secret
 * (`KEYBRAKE_ISSUER_KEY`), as a user would configure it. Each test then starts its own proxy on
 * that port with that key.
 *
 * With `CONDUCTOR_SERVER_URL` set (e.g. the docker-compose stack), that server is used instead;
 * it must have been given the same two values: `KEYBRAKE_E2E_PROXY_PORT`, `KEYBRAKE_E2E_ISSUER_KEY`
 * (and `KEYBRAKE_E2E_PROXY_HOST`, the address the proxy listens on; `0.0.0.0` for Docker).
 */
export default async function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  const external = process.env.CONDUCTOR_SERVER_URL;
  if (external) {
    const port = Number(process.env.KEYBRAKE_E2E_PROXY_PORT);
    const issuerKey = process.env.KEYBRAKE_E2E_ISSUER_KEY;
    if (!Number.isInteger(port) || !issuerKey) {
      throw new Error(
        'CONDUCTOR_SERVER_URL is set: also set KEYBRAKE_E2E_PROXY_PORT and KEYBRAKE_E2E_ISSUER_KEY to what that server has as CONDUCTOR_ENV_KEYBRAKE_PROXY_URL and CONDUCTOR_SECRET_KEYBRAKE_ISSUER_KEY.',
      );
    }
    project.provide('conductorApiUrl', external.replace(/\/+$/, ''));
    project.provide('keybrakeProxyPort', port);
    project.provide('keybrakeProxyHost', process.env.KEYBRAKE_E2E_PROXY_HOST ?? '0.0.0.0');
    project.provide('keybrakeIssuerKey', issuerKey);
    return undefined;
  }
  const jar = process.env.CONDUCTOR_JAR;
  const java = process.env.CONDUCTOR_JAVA;
  if (!jar || !java) {
    throw new Error('CONDUCTOR_JAR / CONDUCTOR_JAVA are not set: run `pnpm e2e:conductor` (it installs the server).');
  }
  const port = await freePort();
  const issuerKey = `kb_issuer_${randomUUID()}`;
  const server = await startConductorServer({
    jar,
    java,
    env: {
      CONDUCTOR_ENV_KEYBRAKE_PROXY_URL: `http://127.0.0.1:${port}`,
      CONDUCTOR_SECRET_KEYBRAKE_ISSUER_KEY: issuerKey,
    },
  });
  project.provide('conductorApiUrl', server.apiUrl);
  project.provide('keybrakeProxyPort', port);
  project.provide('keybrakeProxyHost', '127.0.0.1');
  project.provide('keybrakeIssuerKey', issuerKey);
  return () => server.stop();
}
