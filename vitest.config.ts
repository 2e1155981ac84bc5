import { defineConfig } from 'vitest/config';

/** Files that exercise the store only through HTTP: they run once per store. */
const SHARED_SUITE = [
  'admin-api',
  'proxy-stripe-mock',
  'allowlist',
  'idempotency',
  'vendors',
  'cap-concurrency',
  'config',
  'hostile-input',
  'audit-tampering',
  'issue-16-key-depth',
  'issue-16-issuance',
  'issue-16-request-priceable',
  'issue-16-smaller-holes',
  'issue-16-request-fuzz',
  'issue-17-pricing',
  'issue-17-stripe-state',
  'issue-20-vendor-enforcement',
  'issue-20-refusals',
  'issue-22-key-list',
  'issue-22-key-list-10k',
  'issue-22-events',
  'issue-26-alerts',
  'issue-26-limits',
  'issue-23-verify',
  'issue-25-workload-identity',
  'issue-25-hydra',
  'issue-23-expiry',
  'serve-unread-stdout',
].map((name) => `core-proxy/test/${name}.test.ts`);

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    projects: [
      {
        extends: true,
        test: {
          name: 'embedded',
          include: ['core-proxy/test/**/*.test.ts', 'integrations/*/test/**/*.test.ts'],
          exclude: ['core-proxy/test/redis-*.test.ts', 'core-proxy/test/reliability-*.test.ts'],
          globalSetup: ['core-proxy/test/global-setup.ts'],
          env: { KEYBRAKE_TEST_STORE: 'embedded' },
        },
      },
      {
        extends: true,
        test: {
          name: 'e2e-temporal',
          include: ['e2e/temporal/test/**/*.e2e.test.ts'],
          globalSetup: ['core-proxy/test/global-setup.ts'],
          env: { KEYBRAKE_TEST_STORE: 'embedded' },
          testTimeout: 180_000,
        },
      },
      {
        extends: true,
        test: {
          name: 'reliability',
          include: ['core-proxy/test/reliability-*.test.ts'],
          exclude: ['core-proxy/test/reliability-soak.test.ts'],
          env: { KEYBRAKE_TEST_STORE: 'embedded' },
          testTimeout: 300_000,
        },
      },
      {
        extends: true,
        test: {
          name: 'e2e-conductor',
          include: ['e2e/conductor/test/**/*.e2e.test.ts'],
          globalSetup: ['core-proxy/test/global-setup.ts', 'e2e/conductor/test/global-setup.ts'],
          env: { KEYBRAKE_TEST_STORE: 'embedded' },
          testTimeout: 240_000,
          hookTimeout: 240_000,
        },
      },
      {
        extends: true,
        test: {
          name: 'e2e-cloud-workflows',
          include: ['e2e/cloud-workflows/test/**/*.e2e.test.ts'],
          globalSetup: ['core-proxy/test/global-setup.ts', 'e2e/cloud-workflows/test/global-setup.ts'],
          env: { KEYBRAKE_TEST_STORE: 'embedded' },
          testTimeout: 240_000,
        },
      },
      {
        extends: true,
        test: {
          name: 'kubernetes',
          include: ['templates/kubernetes/test/**/*.test.ts'],
          // The rendered-pod tests start Redis, stripe-mock and the proxy, twice: slow on a busy machine.
          testTimeout: 300_000,
        },
      },
      {
        extends: true,
        test: {
          name: 'console',
          // The operator console in Debian's chromium, against `keybrake serve` on both stores.
          include: ['console/test/**/*.test.ts'],
          globalSetup: ['console/test/global-setup.ts'],
          testTimeout: 300_000,
          hookTimeout: 120_000,
        },
      },
      // The soak measures a steady rate, so it runs alone, after everything else: only when asked.
      ...(process.env.KEYBRAKE_RUN_SOAK === '1'
        ? [
            {
              extends: true,
              test: {
                name: 'soak',
                include: ['core-proxy/test/reliability-soak.test.ts'],
                env: { KEYBRAKE_TEST_STORE: 'redis' },
              },
            },
          ]
        : []),
      {
        extends: true,
        test: {
          name: 'redis',
          include: [...SHARED_SUITE, 'core-proxy/test/redis-*.test.ts', 'core-proxy/test/upgrade-*.test.ts'],
          globalSetup: ['core-proxy/test/global-setup-redis.ts'],
          env: { KEYBRAKE_TEST_STORE: 'redis' },
        },
      },
    ],
  },
});
