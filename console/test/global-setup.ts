import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { TestProject } from 'vitest/node';
import { startRedis } from '../../core-proxy/test/redis-server.js';
import { startStripeMock } from '../../core-proxy/test/stripe-mock.js';

declare module 'vitest' {
  export interface ProvidedContext {
    stripeMockUrl: string;
    redisUrl: string;
    chromiumPath: string;
  }
}

/**
 * The console project: one stripe-mock, one Redis (tests share them by prefix), and Debian's
 * chromium, installed by `scripts/install-chromium.sh` when missing (it prints the binary's path).
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const chromiumPath =
    process.env.KEYBRAKE_CHROMIUM_BIN ||
    execFileSync('bash', [fileURLToPath(new URL('../../scripts/install-chromium.sh', import.meta.url))], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    }).trim();
  // Whichever started is stopped again if the other could not start: nothing outlives the run.
  const [stripeMockStart, redisStart] = await Promise.allSettled([startStripeMock(), startRedis()]);
  if (stripeMockStart.status === 'rejected' || redisStart.status === 'rejected') {
    if (stripeMockStart.status === 'fulfilled') await stripeMockStart.value.stop();
    if (redisStart.status === 'fulfilled') await redisStart.value.stop();
    throw stripeMockStart.status === 'rejected' ? stripeMockStart.reason : (redisStart as PromiseRejectedResult).reason;
  }
  const stripeMock = stripeMockStart.value;
  const redis = redisStart.value;
  project.provide('stripeMockUrl', stripeMock.url);
  project.provide('redisUrl', redis.url);
  project.provide('chromiumPath', chromiumPath);
  return async () => {
    await Promise.all([stripeMock.stop(), redis.stop()]);
  };
}
