import type { TestProject } from 'vitest/node';
import { startStripeMock } from './stripe-mock.js';

declare module 'vitest' {
  export interface ProvidedContext {
    stripeMockUrl: string;
  }
}

/** One stripe-mock for the whole run: it is stateless, so tests share it safely. */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const stripeMock = await startStripeMock();
  project.provide('stripeMockUrl', stripeMock.url);
  return () => stripeMock.stop();
}
