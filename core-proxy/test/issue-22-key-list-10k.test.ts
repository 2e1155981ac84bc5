import { randomUUID } from 'node:crypto';
import { describe, expect, inject, it, onTestFinished } from 'vitest';
import { TEST_STORE } from './helpers.js';
import { expectNoLeak, serverEnvironment, spawnServer } from './server-process.js';

const stripeKey = { vendor: 'stripe', allowed_endpoints: ['POST /v1/payment_intents'], expires_in: '1h' };

describe('issue 22: GET /vault/keys with 10,000 keys, against a real `keybrake serve`', () => {
  it('pages through them with no key missing or repeated, in every sort, while keys are being issued', async () => {
    const server = serverEnvironment(
      TEST_STORE === 'redis'
        ? { KEYBRAKE_REDIS_URL: inject('redisUrl'), KEYBRAKE_REDIS_PREFIX: `t:${randomUUID()}:` }
        : {},
    );
    const serve = await spawnServer(server.env);
    onTestFinished(async () => {
      serve.child.kill('SIGTERM');
      await serve.exited;
    });
    const vaultKeys = new Set<string>();
    // Raw bytes of every listing answer: searched for any vault key (the issuing answer is the
    // only one that may show one) and for the vendor secrets.
    const listed: string[] = [];
    const request = async (method: string, path: string, body?: unknown): Promise<{ status: number; text: string }> => {
      const response = await fetch(`${serve.url}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${server.apiKey}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return { status: response.status, text: await response.text() };
    };
    const issue = async (count: number, into: string[]): Promise<void> => {
      let next = 0;
      await Promise.all(
        Array.from({ length: 16 }, async () => {
          while (next < count) {
            next += 1;
            const answer = await request('POST', '/vault/keys', {
              ...stripeKey,
              usd_cap: 1 + (next % 97),
              agent_run_label: `fanout/${next % 10}`,
            });
            expect(answer.status, answer.text).toBe(201);
            const body = JSON.parse(answer.text) as { key_id: string; vault_key: string };
            vaultKeys.add(body.vault_key);
            into.push(body.key_id);
          }
        }),
      );
    };
    const pageThrough = async (
      query: string,
    ): Promise<{ keys: { key_id: string; agent_run_label: string }[]; pages: number }> => {
      const keys: { key_id: string; agent_run_label: string }[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const answer = await request('GET', `/vault/keys?${query}${cursor === null ? '' : `&cursor=${cursor}`}`);
        expect(answer.status, answer.text).toBe(200);
        listed.push(answer.text);
        const page = JSON.parse(answer.text) as { keys: typeof keys; next_cursor: string | null };
        keys.push(...page.keys);
        cursor = page.next_cursor;
        pages += 1;
        expect(pages, 'the listing never ends').toBeLessThan(1000);
      } while (cursor !== null);
      return { keys, pages };
    };

    const issued: string[] = [];
    await issue(10_000, issued);
    for (const sort of ['newest', 'most_spent', 'closest_to_cap']) {
      const during: string[] = [];
      const [{ keys, pages }] = await Promise.all([pageThrough(`sort=${sort}&limit=500`), issue(300, during)]);
      const ids = keys.map((key) => key.key_id);
      expect(new Set(ids).size, `${sort}: repeated keys`).toBe(ids.length);
      const seen = new Set(ids);
      expect(
        issued.filter((id) => !seen.has(id)),
        `${sort}: missing keys`,
      ).toEqual([]);
      const all = new Set([...issued, ...during]);
      expect(ids.every((id) => all.has(id))).toBe(true);
      expect(pages).toBeGreaterThanOrEqual(20);
      issued.push(...during);
    }
    const { keys } = await pageThrough('label_prefix=fanout%2F3&limit=500');
    expect(keys.length).toBe(issued.length / 10);
    expect(keys.every((key) => key.agent_run_label === 'fanout/3')).toBe(true);

    expect(vaultKeys.size).toBe(issued.length);
    for (const text of listed) {
      expect(/kb_vk_[A-Za-z0-9_-]+/.exec(text)?.[0], 'a listing shows a vault key').toBeUndefined();
      for (const secret of Object.values(server.secrets)) expect(text.includes(secret)).toBe(false);
    }
    expect(/kb_vk_[A-Za-z0-9_-]+/.exec(serve.output())?.[0], 'the log shows a vault key').toBeUndefined();
    expectNoLeak(serve.output(), Object.values(server.secrets));
  }, 900_000);
});
