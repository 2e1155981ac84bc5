import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { subworkflowsSource } from '@keybrake/cloud-workflows';
import { describe, expect, it } from 'vitest';
import { freePort } from '../../../core-proxy/test/ports.js';
import { listenOnLoopback, startProxy } from '../../../core-proxy/test/helpers.js';
import { executionEnv, runEmulatorCli, runInEmulator, startEmulatorServe } from './emulator.js';

/**
 * Where workflows-emulator 1.10.0 departs from Google's documented semantics, shown in the
 * emulator itself. The template is written for Google and works around each of these (see the
 * README's list); a test failing here means the emulator changed, and the workaround or the README
 * should be looked at again.
 */

/** A local HTTP server answering with `handler`; counts requests. */
async function startServer(
  handler: (request: IncomingMessage, response: ServerResponse, body: string) => void,
): Promise<{ url: string; requests: () => number }> {
  let requests = 0;
  const server = createServer((request, response) => {
    requests += 1;
    let body = '';
    request.on('data', (chunk: Buffer) => (body += chunk.toString()));
    request.on('end', () => handler(request, response, body));
  });
  const port = await listenOnLoopback(server);
  return { url: `http://127.0.0.1:${port}`, requests: () => requests };
}

const always503 = () =>
  startServer((_request, response) => {
    response.writeHead(503, { 'content-type': 'application/json' });
    response.end('{"error":"unavailable"}');
  });

describe('workflows-emulator 1.10.0: departures from Google Cloud Workflows (each worked around in the template)', () => {
  it('emulator gap: `run` leaves GOOGLE_CLOUD_WORKFLOW_EXECUTION_ID unset; the subworkflows then refuse (KeybrakeNoExecutionId) and nothing reaches the proxy', async () => {
    const proxy = await startProxy({ store: 'embedded' });
    const cli = await runEmulatorCli(
      subworkflowsSource(),
      {
        proxy_url: proxy.url,
        budget_usd: 10,
        customers: [{ id: 'cus_1', amount_cents: 100 }],
        issuer_key_from_argument: true,
        issuer_key: proxy.apiKey,
      },
      {},
    );
    expect(cli.code).not.toBe(0);
    expect(cli.stderr).toContain('GOOGLE_CLOUD_WORKFLOW_EXECUTION_ID is not set');
    expect(proxy.issuedVaultKeys()).toEqual([]);
  });

  it('emulator gap: `serve` runs the workflow inside the HTTP request and answers with its result (no Execution, no Executions API), and maps the argument’s keys onto main’s parameters by name', async () => {
    const serve = await startEmulatorServe(
      'main:\n  params: [args]\n  steps:\n    - done:\n        return:\n          got: ${args}\n',
    );
    const executions = `${serve.url}/v1/projects/p/locations/us-central1/workflows/w/executions`;
    const post = (argument: unknown) =>
      fetch(executions, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ argument: JSON.stringify(argument) }),
      });
    // Google passes the whole argument as main's one parameter; the emulator looks it up by name.
    expect((await post({ budget_usd: 5 })).status).toBe(500);
    const named = await post({ args: { budget_usd: 5 } });
    expect(named.status).toBe(200);
    // The workflow's result itself, not an Execution resource (no name, no state to poll).
    expect(await named.json()).toEqual({ got: { budget_usd: 5 } });
    const get = await fetch(`${executions}/some-execution`);
    expect([404, 405]).toContain(get.status);
  });

  it('emulator gap: an HTTP error is tagged HTTPError (Google: HttpError), with the response headers as the server cased them', async () => {
    const server = await startServer((_request, response) => {
      response.writeHead(429, { 'content-type': 'application/json', 'X-Keybrake-Error': 'cap_exhausted' });
      response.end('{"error":{"code":"cap_exhausted"}}');
    });
    const outcome = await runInEmulator(
      `main:
  params: [args]
  steps:
    - call_it:
        try:
          call: http.get
          args:
            url: \${args.url}
        except:
          as: e
          steps:
            - report:
                return:
                  tags: \${e.tags}
                  code: \${e.code}
                  header_names: \${keys(e.headers)}
                  body: \${e.body}
`,
      { url: server.url },
    );
    expect(outcome.result).toMatchObject({
      tags: ['HTTPError'],
      code: 429,
      body: { error: { code: 'cap_exhausted' } },
    });
    expect(outcome.result.header_names).toContain('X-Keybrake-Error');
  });

  it('emulator gap: a retry predicate’s parameter must be named `e` (another name fails the step with KeyError instead of retrying)', async () => {
    const server = await always503();
    const outcome = await runInEmulator(
      `main:
  params: [args]
  steps:
    - call_it:
        try:
          steps:
            - attempt:
                try:
                  call: http.get
                  args:
                    url: \${args.url}
                retry:
                  predicate: \${retry_anything}
                  max_retries: 2
        except:
          as: e
          steps:
            - report:
                return: \${e}
retry_anything:
  params: [err]
  steps:
    - always:
        return: true
`,
      { url: server.url },
    );
    expect(outcome.result).toMatchObject({ tags: ['KeyError'], message: expect.stringContaining('err') });
    expect(server.requests()).toBe(1);
  });

  it('emulator gap: backoff.initial_delay is ignored (it reads `delay`) and max_delay ends the retries instead of capping the delay', async () => {
    const server = await always503();
    const outcome = await runInEmulator(
      `main:
  params: [args]
  steps:
    - call_it:
        try:
          steps:
            - attempt:
                try:
                  call: http.get
                  args:
                    url: \${args.url}
                retry:
                  predicate: \${http.default_retry_predicate}
                  max_retries: 5
                  backoff:
                    initial_delay: 5
                    max_delay: 2
                    multiplier: 2
        except:
          as: e
          steps:
            - report:
                return: \${e.code}
`,
      { url: server.url },
    );
    expect(outcome.result).toBe(503);
    // Google: 1 + 5 retries, every delay capped at 2 s. The emulator: waits its default 1 s, then
    // stops once the next delay (2 s) reaches max_delay.
    expect(server.requests()).toBe(2);
  });

  it('emulator gap: concurrency_limit is ignored: three iterations with concurrency_limit 1 are in flight at once', async () => {
    let inFlight = 0;
    let most = 0;
    const waiting: ServerResponse[] = [];
    const release = () => waiting.splice(0).forEach((response) => response.end('ok'));
    const server = await startServer((_request, response) => {
      inFlight += 1;
      most = Math.max(most, inFlight);
      response.on('finish', () => (inFlight -= 1));
      waiting.push(response);
      // Held until all three are in flight; a Google-like engine (one at a time) is let through alone.
      if (inFlight === 3) release();
      else setTimeout(release, 15_000).unref();
    });
    const outcome = await runInEmulator(
      `main:
  params: [args]
  steps:
    - fan_out:
        parallel:
          concurrency_limit: 1
          for:
            value: each_request
            in: [1, 2, 3]
            steps:
              - get:
                  call: http.get
                  args:
                    url: \${args.url}
    - done:
        return: "done"
`,
      { url: server.url },
    );
    expect(outcome.result).toBe('done');
    expect(most).toBe(3);
  });

  it('emulator gap: parallel iterations share one variable scope (Google: each iteration has its own)', async () => {
    const outcome = await runInEmulator(
      `main:
  params: [args]
  steps:
    - init:
        assign:
          - seen: {}
    - fan_out:
        parallel:
          shared: [seen]
          for:
            value: each_value
            in: ["a", "b"]
            steps:
              - mine:
                  assign:
                    - mine: \${each_value}
              - wait:
                  call: sys.sleep
                  args:
                    seconds: 2
              - record:
                  assign:
                    - seen[each_value]: \${mine}
    - done:
        return: \${seen}
`,
      {},
    );
    // Both iterations read the one `mine`, last written by whichever ran second.
    expect(outcome.result.a).toBe(outcome.result.b);
  });

  it('emulator gap: inside a parallel for, keys() of any map also lists the loop variable; get_type() fails on maps', async () => {
    const outcome = await runInEmulator(
      `main:
  params: [args]
  steps:
    - init:
        assign:
          - m:
              a: 1
          - seen: {}
    - fan_out:
        parallel:
          shared: [seen]
          for:
            value: each_thing
            in: ["loop value"]
            steps:
              - look:
                  assign:
                    - seen["keys"]: \${keys(m)}
    - type_of_map:
        try:
          switch:
            - condition: \${get_type(m) == "map"}
              assign:
                - map_type: "map"
        except:
          as: e
          steps:
            - note:
                assign:
                  - map_type: \${e.tags}
    - done:
        return:
          seen: \${seen}
          map_type: \${map_type}
`,
      {},
    );
    expect(outcome.result.seen.keys).toEqual(expect.arrayContaining(['a', 'each_thing']));
    expect(outcome.result.map_type).toEqual(['ValueError']);
  });

  it('emulator gap: a switch runs every matching condition (Google: only the first)', async () => {
    const outcome = await runInEmulator(
      `main:
  params: [args]
  steps:
    - init:
        assign:
          - hits: 0
    - pick:
        switch:
          - condition: \${1 == 1}
            assign:
              - hits: \${hits + 1}
          - condition: \${2 == 2}
            assign:
              - hits: \${hits + 1}
    - done:
        return: \${hits}
`,
      {},
    );
    expect(outcome.result).toBe(2);
  });

  it('emulator gap: null, true and false are not defined inside expressions (YAML literals work)', async () => {
    const literal = await runInEmulator(
      'main:\n  params: [args]\n  steps:\n    - init:\n        assign:\n          - flag: true\n    - done:\n        return: ${flag}\n',
      {},
    );
    expect(literal.result).toBe(true);
    await expect(
      runInEmulator('main:\n  params: [args]\n  steps:\n    - done:\n        return: ${true}\n', {}),
    ).rejects.toThrow(/true is probably not defined/);
  });

  it('emulator gap: a map body is sent as JSON whatever the Content-Type (Google URL-encodes it for application/x-www-form-urlencoded)', async () => {
    let received: { type: string | undefined; body: string } | undefined;
    const server = await startServer((request, response, body) => {
      received = { type: request.headers['content-type'], body };
      response.end('ok');
    });
    await runInEmulator(
      `main:
  params: [args]
  steps:
    - post:
        call: http.post
        args:
          url: \${args.url}
          headers:
            Content-Type: application/x-www-form-urlencoded
          body:
            amount: 2000
            currency: usd
`,
      { url: server.url },
    );
    expect(received?.type).toBe('application/x-www-form-urlencoded');
    expect(JSON.parse(received!.body)).toEqual({ amount: 2000, currency: 'usd' });
  });

  it('emulator gap: a refused connection cannot be caught or retried (it ends the run with a Python ConnectionError)', async () => {
    const closedPort = await freePort();
    await expect(
      runInEmulator(
        `main:
  params: [args]
  steps:
    - call_it:
        try:
          call: http.get
          args:
            url: \${args.url}
        except:
          as: e
          steps:
            - caught:
                return: "caught"
`,
        { url: `http://127.0.0.1:${closedPort}/` },
      ),
    ).rejects.toThrow(/ConnectionError/);
  });

  it('emulator gap: call arguments are checked against a schema that wants literals: `method`, `headers`, `timeout` and a raised `code` cannot be expressions', async () => {
    await expect(
      runInEmulator(
        'main:\n  params: [args]\n  steps:\n    - get:\n        call: http.request\n        args:\n          method: ${args.m}\n          url: http://127.0.0.1:9/\n',
        { m: 'GET' },
      ),
    ).rejects.toThrow(/is not one of \['GET'/);
    await expect(
      runInEmulator('main:\n  params: [args]\n  steps:\n    - fail:\n        raise:\n          code: ${args.c}\n', {
        c: 1,
      }),
    ).rejects.toThrow(/is not of type 'integer'/);
  });

  it('emulator gap: a map key named like a Python dict method (items, keys, values, get, ...) cannot be read with a dot', async () => {
    const outcome = await runInEmulator(
      `main:
  params: [args]
  steps:
    - read:
        try:
          return: \${len(args.items)}
        except:
          as: e
          steps:
            - report:
                return: \${e.tags}
`,
      { items: [1, 2] },
    );
    expect(outcome.result).toEqual(['TypeError']);
    const bracket = await runInEmulator(
      'main:\n  params: [args]\n  steps:\n    - read:\n        return: ${len(args["items"])}\n',
      {
        items: [1, 2],
      },
    );
    expect(bracket.result).toBe(2);
  });

  it('issue 25: emulator gap: `auth: {type: OIDC}` is not supported (http_utils.request raises NotImplementedError): the example with its default workload identity fails and issues nothing', async () => {
    // A bare call: the emulator neither fetches a token nor sends the request.
    const server = await startServer((_request, response) => {
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end('{}');
    });
    const bare = await runInEmulator(
      `main:\n  params: [args]\n  steps:\n    - send:\n        call: http.post\n        args:\n          url: ${server.url}/vault/keys\n          auth:\n            type: OIDC\n            audience: ${server.url}\n          body: {a: 1}\n        result: r\n    - done:\n        return: \${r}\n`,
      {},
    );
    expect(bare.state).toBe('FAILED');
    expect(bare.error?.payload).toMatchObject({
      tags: ['NotImplementedError'],
      message: 'OIDC auth is not supported yet.',
    });
    expect(server.requests()).toBe(0);
    // The template's admin calls retry with http.default_retry, whose predicate (in the emulator)
    // reads e.code, which that error lacks: the emulator itself then crashes. Nothing is issued.
    const proxy = await startProxy({ store: 'embedded' });
    await expect(
      runInEmulator(subworkflowsSource(), { proxy_url: proxy.url, budget_usd: 10, customers: [] }),
    ).rejects.toThrow(/crashed[\s\S]*The variable code is probably not defined/);
    expect(proxy.issuedVaultKeys()).toEqual([]);
  });

  it('emulator gap: googleapis.secretmanager.v1.projects.secrets.versions.accessString is not supported: the example with issuer_key_from_secret_manager fails and issues nothing', async () => {
    const proxy = await startProxy({ store: 'embedded' });
    const outcome = await runInEmulator(subworkflowsSource(), {
      proxy_url: proxy.url,
      budget_usd: 10,
      customers: [],
      issuer_key_from_secret_manager: true,
    });
    expect(outcome.state).toBe('FAILED');
    expect(outcome.error?.payload).toMatchObject({ tags: ['KeyError'], message: 'accessString' });
    expect(proxy.issuedVaultKeys()).toEqual([]);
  });

  it('emulator gap: an error raised inside an assign step leaves the emulator’s global lock held, so the next assign hangs for ever (the template evaluates nothing that can fail in an assign)', async () => {
    await expect(
      runInEmulator(
        `main:
  params: [args]
  steps:
    - bad:
        try:
          assign:
            - x: \${1 / 0}
        except:
          as: e
          steps:
            - recover:
                assign:
                  - x: 0
    - done:
        return: \${x}
`,
        {},
        executionEnv(),
        { hangsAfterMs: 20_000 },
      ),
    ).rejects.toThrow(/hung/);
  });
});
