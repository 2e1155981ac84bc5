import type { TestProject } from 'vitest/node';
import { startRedis, startRedisCluster } from './redis-server.js';
import { startStripeMock } from './stripe-mock.js';

declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string;
    redisClusterUrl: string;
  }
}

/** The Redis project: stripe-mock, one Redis and one 3-master Redis Cluster, shared by prefix per test. */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const [stripeMock, redis, cluster] = await Promise.all([startStripeMock(), startRedis(), startRedisCluster()]);
  project.provide('stripeMockUrl', stripeMock.url);
  project.provide('redisUrl', redis.url);
  project.provide('redisClusterUrl', cluster.url);
  return async () => {
    await Promise.all([stripeMock.stop(), redis.stop(), cluster.stop()]);
  };
}
