import { readFileSync } from 'node:fs';
import { describe, expect, inject, it, onTestFinished } from 'vitest';
import { adminClient, issueStripeKey } from './helpers.js';
import { chargeOnNewConnection } from './issue-22-events-processes.js';
import { expectNoLeak, serverEnvironment, spawnServer } from './server-process.js';

const DASHBOARD = new URL('../../templates/grafana/keybrake.json', import.meta.url);

interface Panel {
  type: string;
  title: string;
  gridPos: { x: number; y: number; w: number; h: number };
  datasource: { type: string; uid: string };
  targets: { expr: string; refId: string }[];
}

describe('issue 22: the Grafana dashboard (templates/grafana/keybrake.json)', () => {
  it('is a dashboard with panels on a Prometheus datasource variable, and queries only metrics a real serve exports after real traffic', async () => {
    const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as {
      uid: string;
      title: string;
      schemaVersion: number;
      panels: Panel[];
      templating: { list: { name: string; type: string; query: unknown }[] };
    };
    expect(dashboard.uid).toMatch(/^[a-z0-9-]{1,40}$/);
    expect(dashboard.title).toBe('Keybrake');
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36);
    expect(dashboard.templating.list).toContainEqual(
      expect.objectContaining({ name: 'datasource', type: 'datasource', query: 'prometheus' }),
    );
    expect(dashboard.panels.length).toBeGreaterThanOrEqual(8);
    const ids = new Set<number>();
    for (const panel of dashboard.panels as (Panel & { id: number })[]) {
      expect(['timeseries', 'stat', 'barchart']).toContain(panel.type);
      expect(panel.title.length).toBeGreaterThan(0);
      expect(panel.datasource).toEqual({ type: 'prometheus', uid: '${datasource}' });
      expect(panel.gridPos.w).toBeGreaterThan(0);
      expect(panel.targets.length).toBeGreaterThan(0);
      ids.add(panel.id);
    }
    expect(ids.size).toBe(dashboard.panels.length);
    const titles = dashboard.panels.map((panel) => panel.title.toLowerCase()).join(' | ');
    for (const topic of [
      'spend per vendor',
      'spend per run label',
      'cap hits',
      'refusals by code',
      'latency',
      'store errors',
    ])
      expect(titles).toContain(topic);

    // A real serve in front of stripe-mock: charges, a cap hit, a refusal at the allowlist.
    const environment = serverEnvironment({ KEYBRAKE_STRIPE_BASE_URL: inject('stripeMockUrl') });
    const server = await spawnServer(environment.env);
    onTestFinished(async () => {
      server.child.kill('SIGTERM');
      await server.exited;
    });
    const admin = adminClient(server.url, environment.apiKey);
    const key = await issueStripeKey(admin, 5);
    expect((await admin('GET', `/vault/keys/${key.key_id}`)).status).toBe(200);
    for (const cents of [100, 200]) expect(await chargeOnNewConnection(server.url, key.vault_key, cents)).toBe(200);
    expect(await chargeOnNewConnection(server.url, key.vault_key, 400)).toBe(429);
    const refused = await fetch(`${server.url}/stripe/v1/charges`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key.vault_key}` },
    });
    expect(refused.status).toBe(403);
    const scrape = await (await fetch(`${server.url}/metrics`)).text();
    const families = new Set([...scrape.matchAll(/^# TYPE (\S+) /gm)].map((match) => match[1] as string));
    const samples = scrape.split('\n').filter((line) => line !== '' && !line.startsWith('#'));

    const exprs = dashboard.panels.flatMap((panel) => panel.targets.map((target) => target.expr));
    const used = new Set(
      exprs.flatMap((expr) => [...expr.matchAll(/\bkeybrake_[a-z0-9_]+/g)].map((match) => match[0])),
    );
    expect(used.size).toBeGreaterThanOrEqual(7);
    for (const name of used) {
      const family = name.replace(/_(bucket|sum|count)$/, '');
      expect(families.has(family) || families.has(name), `${name} is exported`).toBe(true);
    }
    // The metrics this traffic moves have samples, with the labels the panels group by.
    const sampleOf = (name: string, labels: Record<string, string> = {}): string | undefined =>
      samples.find(
        (line) =>
          line.startsWith(`${name}{`) &&
          Object.entries(labels).every(([label, value]) => line.includes(`${label}="${value}"`)),
      );
    expect(sampleOf('keybrake_spend_usd_total', { vendor: 'stripe' })).toMatch(/ 3$/);
    expect(sampleOf('keybrake_spend_by_label_usd_total', { vendor: 'stripe', label: '' })).toMatch(/ 3$/);
    expect(sampleOf('keybrake_cap_hits_total', { vendor: 'stripe' })).toMatch(/ 1$/);
    expect(sampleOf('keybrake_proxy_requests_total', { outcome: 'blocked', reason: 'cap_exhausted' })).toBeDefined();
    expect(
      sampleOf('keybrake_proxy_requests_total', { outcome: 'blocked', reason: 'endpoint_not_allowed' }),
    ).toBeDefined();
    expect(sampleOf('keybrake_upstream_duration_seconds_bucket', { vendor: 'stripe' })).toBeDefined();
    for (const expr of exprs) {
      for (const match of expr.matchAll(/by \(([^)]+)\) \(\w+\((keybrake_[a-z0-9_]+)/g)) {
        const metric = match[2] as string;
        for (const label of (match[1] as string).split(',').map((name) => name.trim())) {
          if (label === 'instance') continue; // added by Prometheus at scrape
          expect(
            samples.some((line) => line.startsWith(`${metric}{`) && line.includes(`${label}="`)),
            `${metric} has a ${label} label`,
          ).toBe(true);
        }
      }
    }
    expectNoLeak(scrape + server.output(), [...Object.values(environment.secrets), key.vault_key]);
  });
});
