import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { listenOnLoopback, stripeMockProxy } from '../../../core-proxy/test/helpers.js';
import { type ProjectedTokenVolume, projectedTokenVolume } from '../../../core-proxy/test/workload-tokens.js';
import { KeybrakeApiError, KeybrakeClient, TokenFileError, fromTokenFile } from '../src/index.js';

/** A projected token volume (see `projectedTokenVolume`), removed when the test finishes. */
function projectedVolume(firstToken: string): ProjectedTokenVolume {
  const volume = projectedTokenVolume(firstToken);
  onTestFinished(() => volume.remove());
  return volume;
}

/** A server of ours that only records the Authorization header of each request and answers 404. */
async function recordingServer() {
  const authorizations: (string | undefined)[] = [];
  const server = createServer((request, response) => {
    authorizations.push(request.headers.authorization);
    response.writeHead(404, { 'content-type': 'application/json' });
    response.end(JSON.stringify({ error: { code: 'not_found', message: 'no such key' } }));
  });
  const port = await listenOnLoopback(server);
  onTestFinished(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { url: `http://127.0.0.1:${port}`, authorizations };
}

describe('issue 25: the client SDK token provider (fromTokenFile)', () => {
  it('sends the file token as the bearer and the new one after a kubelet-style ..data swap', async () => {
    const server = await recordingServer();
    const volume = projectedVolume('token-one\n');
    const client = new KeybrakeClient({ baseUrl: server.url, tokenProvider: fromTokenFile(volume.path) });
    await expect(client.getVaultKey('key_a')).rejects.toMatchObject({ status: 404 });
    await expect(client.getVaultKey('key_a')).rejects.toMatchObject({ status: 404 });
    volume.rotate('token-two');
    await expect(client.getVaultKey('key_a')).rejects.toMatchObject({ status: 404 });
    volume.rotate('token-three');
    volume.rotate('token-four');
    await expect(client.getVaultKey('key_a')).rejects.toMatchObject({ status: 404 });
    expect(server.authorizations).toEqual([
      'Bearer token-one',
      'Bearer token-one',
      'Bearer token-two',
      'Bearer token-four',
    ]);
  });

  it('re-reads a file rewritten in place (same inode) when its size or times change', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kb-token-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, 'token');
    writeFileSync(path, 'short');
    const provider = fromTokenFile(path);
    expect(await provider()).toBe('short');
    writeFileSync(path, 'a-longer-token');
    expect(await provider()).toBe('a-longer-token');
  });

  it('against the real proxy: a rotation to a token the proxy refuses gives 401, the next valid one works', async () => {
    const first = `kb_admin_${randomUUID()}`;
    const second = `kb_admin_${randomUUID()}`;
    // The bearer is opaque to the client: two issuer keys stand in for two rotated tokens here;
    // the Hydra-token tests send real JWTs the same way.
    const proxy = await stripeMockProxy({ apiKey: first, env: { KEYBRAKE_API_KEYS: `${first},${second}` } });
    const volume = projectedVolume(first);
    const client = new KeybrakeClient({ baseUrl: proxy.url, tokenProvider: fromTokenFile(volume.path) });
    const issued = await client.issueVaultKey({
      vendor: 'stripe',
      usd_cap: 5,
      allowed_endpoints: ['POST /v1/payment_intents'],
      expires_in: '10m',
    });
    volume.rotate('kb_admin_not-trusted');
    const refused = await client.getVaultKey(issued.key_id).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(KeybrakeApiError);
    expect(refused).toMatchObject({ status: 401, code: 'unauthorized' });
    volume.rotate(second);
    expect(await client.getVaultKey(issued.key_id)).toMatchObject({ key_id: issued.key_id, status: 'active' });
    expect(await client.revokeVaultKey(issued.key_id)).toEqual({ key_id: issued.key_id, status: 'revoked' });
  });

  it('a missing, empty or multi-line token file fails with TokenFileError naming the path, never the text', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kb-token-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const server = await recordingServer();
    const missing = new KeybrakeClient({ baseUrl: server.url, tokenProvider: fromTokenFile(join(dir, 'absent')) });
    const missingError = await missing.getVaultKey('key_a').catch((error: unknown) => error);
    expect(missingError).toBeInstanceOf(TokenFileError);
    expect(missingError).toMatchObject({ code: 'token_file_unreadable', path: join(dir, 'absent') });
    expect((missingError as Error).message).toContain('ENOENT');

    writeFileSync(join(dir, 'empty'), '  \n');
    await expect(fromTokenFile(join(dir, 'empty'))()).rejects.toBeInstanceOf(TokenFileError);

    const secretLooking = 'eyJhbGciOiJSUzI1NiJ9.secret-part';
    writeFileSync(join(dir, 'two-lines'), `${secretLooking}\ninjected: header`);
    const twoLines = await fromTokenFile(join(dir, 'two-lines'))().catch((error: unknown) => error);
    expect(twoLines).toBeInstanceOf(TokenFileError);
    expect(String((twoLines as Error).message)).not.toContain('secret-part');
    expect(JSON.stringify(twoLines)).not.toContain('secret-part');
    // Nothing was sent for any of them.
    expect(server.authorizations).toEqual([]);
  });

  it('eight concurrent requests all send the file token', async () => {
    const server = await recordingServer();
    const volume = projectedVolume('shared-token');
    const client = new KeybrakeClient({ baseUrl: server.url, tokenProvider: fromTokenFile(volume.path) });
    await Promise.all(Array.from({ length: 8 }, () => client.getVaultKey('key_a').catch(() => undefined)));
    expect(server.authorizations).toEqual(Array.from({ length: 8 }, () => 'Bearer shared-token'));
  });

  it('a 401 token_expired is retried once with the token file rotated meanwhile, never without a rotation', async () => {
    const authorizations: (string | undefined)[] = [];
    const onExpiry: { rotate?: () => void } = {};
    const server = createServer((request, response) => {
      authorizations.push(request.headers.authorization);
      const expired = request.headers.authorization === 'Bearer old-token';
      if (expired) onExpiry.rotate?.();
      response.writeHead(expired ? 401 : 404, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ error: { code: expired ? 'token_expired' : 'not_found', message: 'x' } }));
    });
    const port = await listenOnLoopback(server);
    onTestFinished(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const volume = projectedVolume('old-token');
    const client = new KeybrakeClient({
      baseUrl: `http://127.0.0.1:${port}`,
      tokenProvider: fromTokenFile(volume.path),
      maxNetworkRetries: 0,
    });
    // No rotation: the refusal is the answer, after one request.
    await expect(client.getVaultKey('key_a')).rejects.toMatchObject({ status: 401, code: 'token_expired' });
    expect(authorizations).toEqual(['Bearer old-token']);
    // The kubelet rotates the file while the expired token is in flight: the new one is sent next.
    onExpiry.rotate = () => volume.rotate('new-token');
    await expect(
      client.issueVaultKey({ vendor: 'stripe', allowed_endpoints: [], expires_in: 60 }),
    ).rejects.toMatchObject({
      status: 404,
    });
    expect(authorizations).toEqual(['Bearer old-token', 'Bearer old-token', 'Bearer new-token']);
  });

  it('takes exactly one of apiKey and tokenProvider', () => {
    expect(() => new KeybrakeClient({ baseUrl: 'http://127.0.0.1:1' })).toThrow(TypeError);
    expect(() => new KeybrakeClient({ baseUrl: 'http://127.0.0.1:1', apiKey: 'k', tokenProvider: () => 't' })).toThrow(
      TypeError,
    );
  });
});
