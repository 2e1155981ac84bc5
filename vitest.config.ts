import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['core-proxy/test/**/*.test.ts'],
    globalSetup: ['core-proxy/test/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    reporters: ['default'],
  },
});
