/** How the client reads answers that the local server never gives: a stubbed fetch stands in for the network. */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { describe, it } from 'node:test';
import { inspect } from 'node:util';
import { createTokenBrokerClient, isTokenBrokerError, TokenBrokerError } from '@token-broker/client';
import { listenOnLoopback } from '../../lambdas/local/listen.js';

const credentials = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'test-secret' };
const secretToken = 'eyJhbGciOiJSUzI1NiJ9.c2VjcmV0LXRva2Vu.c2lnbmF0dXJl';

function stubbed(answer: () => Response | Promise<Response>) {
  let calls = 0;
  const stub: typeof fetch = async () => {
    calls += 1;
    return answer();
  };
  const client = createTokenBrokerClient({
    transport: {
      kind: 'http',
      baseUrl: 'https://abc123.execute-api.us-east-1.amazonaws.com/v1/',
      region: 'us-east-1',
      credentials,
    },
    fetch: stub,
  });
  return { client, calls: () => calls };
}

const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json', ...headers } });

function assertNoToken(error: unknown): void {
  assert.ok(error instanceof TokenBrokerError);
  for (const text of [error.message, error.description, String(error.stack), inspect(error, { depth: 10 })]) {
    assert.ok(!text.includes(secretToken), 'the token appears in the error');
    assert.ok(!text.includes('c2VjcmV0LXRva2Vu'), 'part of the token appears in the error');
  }
}

describe('token-broker client: reading answers', () => {
  it('keeps every broker error code and its status', async () => {
    for (const [code, status] of [
      ['invalid_request', 400],
      ['access_denied', 403],
      ['unavailable', 503],
      ['upstream_error', 502],
      ['upstream_timeout', 504],
      ['server_error', 500],
    ] as const) {
      const { client } = stubbed(() => json(status, { error: code, error_description: `it is ${code}` }));
      await assert.rejects(client.getToken({ client: 'bwell' }), (error: unknown) => {
        assert.ok(isTokenBrokerError(error, code));
        assert.equal(error.status, status);
        assert.equal(error.description, `it is ${code}`);
        assert.equal(error.message, `token broker: ${code} (HTTP ${status}) for client bwell: it is ${code}`);
        return true;
      });
    }
  });

  it("API Gateway's own rejections are transport errors that name its error type and message", async () => {
    const { client } = stubbed(() =>
      json(
        403,
        { message: 'User: arn:aws:iam::1:role/x is not authorized to perform: execute-api:Invoke' },
        { 'x-amzn-ErrorType': 'AccessDeniedException:http://internal.amazon.com/coral/com.amazon.coral.service/' },
      ),
    );
    await assert.rejects(client.getToken({ client: 'bwell' }), (error: unknown) => {
      assert.ok(isTokenBrokerError(error, 'transport_error'));
      assert.equal(error.status, 403);
      assert.equal(
        error.description,
        'HTTP 403 from API Gateway (AccessDeniedException): User: arn:aws:iam::1:role/x is not authorized to perform: execute-api:Invoke',
      );
      return true;
    });
  });

  it('non-JSON answers and unknown error codes are transport errors', async () => {
    const html = stubbed(() => new Response('<html>Bad Gateway</html>', { status: 502 }));
    await assert.rejects(html.client.getToken({ client: 'bwell' }), (error: unknown) => {
      assert.ok(isTokenBrokerError(error, 'transport_error'));
      assert.equal(error.status, 502);
      assert.equal(error.description, 'HTTP 502 from something other than the broker');
      return true;
    });
    const unknown = stubbed(() => json(400, { error: 'invalid_grant', error_description: 'no' }));
    await assert.rejects(unknown.client.getToken({ client: 'bwell' }), (error: unknown) =>
      isTokenBrokerError(error, 'transport_error'),
    );
  });

  it('a success answer that is not a token response is a transport error that never quotes the body', async () => {
    const bodies = [
      `{"access_token":"${secretToken}","token_type":"Bearer","expires_in":36`, // truncated: JSON.parse would quote it
      JSON.stringify({ access_token: secretToken, token_type: 'Bearer', scope: 'a' }), // no expires_in
      JSON.stringify({ access_token: secretToken, token_type: 'mac', expires_in: 3600, scope: 'a' }),
      JSON.stringify({ access_token: secretToken, token_type: 'Bearer', expires_in: -1, scope: 'a' }),
    ];
    for (const body of bodies) {
      const { client } = stubbed(() => new Response(body, { status: 200 }));
      await assert.rejects(client.getToken({ client: 'bwell' }), (error: unknown) => {
        assert.ok(isTokenBrokerError(error, 'transport_error'));
        assert.equal(error.status, 200);
        assertNoToken(error);
        return true;
      });
    }
  });

  it('a failure is not cached: the next call asks again and may succeed', async () => {
    let fail = true;
    const { client, calls } = stubbed(() =>
      fail
        ? json(503, { error: 'unavailable', error_description: 'try again' })
        : json(200, { access_token: secretToken, token_type: 'Bearer', expires_in: 3600, scope: 'a' }),
    );
    await assert.rejects(client.getToken({ client: 'bwell' }), (error: unknown) =>
      isTokenBrokerError(error, 'unavailable'),
    );
    fail = false;
    assert.equal((await client.getToken({ client: 'bwell' })).accessToken, secretToken);
    await client.getToken({ client: 'bwell' });
    assert.equal(calls(), 2);
  });

  it('concurrent callers share a failure too, and clear() keeps an in-flight answer out of the cache', async () => {
    let release: (response: Response) => void = () => {};
    const { client, calls } = stubbed(
      () =>
        new Promise<Response>((resolve) => {
          release = resolve;
        }),
    );
    const waiting = [client.getToken({ client: 'bwell' }), client.getToken({ client: 'bwell' })];
    await new Promise((resolve) => setTimeout(resolve, 20));
    release(json(500, { error: 'server_error', error_description: 'boom' }));
    const settled = await Promise.allSettled(waiting);
    assert.deepEqual(
      settled.map((result) => result.status === 'rejected' && isTokenBrokerError(result.reason, 'server_error')),
      [true, true],
    );
    assert.equal(calls(), 1);

    const inFlight = client.getToken({ client: 'bwell' });
    await new Promise((resolve) => setTimeout(resolve, 20));
    client.clear();
    release(json(200, { access_token: secretToken, token_type: 'Bearer', expires_in: 3600, scope: 'a' }));
    assert.equal((await inFlight).accessToken, secretToken);
    const next = client.getToken({ client: 'bwell' });
    await new Promise((resolve) => setTimeout(resolve, 20));
    release(json(200, { access_token: 'another', token_type: 'Bearer', expires_in: 3600, scope: 'a' }));
    assert.equal((await next).accessToken, 'another');
    assert.equal(calls(), 3);
  });

  it('a token that arrives inside the refresh window is handed out but not cached', async () => {
    const { client, calls } = stubbed(() =>
      json(200, { access_token: secretToken, token_type: 'Bearer', expires_in: 30, scope: 'a' }),
    );
    await client.getToken({ client: 'bwell' });
    await client.getToken({ client: 'bwell' });
    assert.equal(calls(), 2);
  });

  it('forceRefresh skips the cache, shares a request only with other forced ones, and its answer is cached', async () => {
    let issued = 0;
    const bodies: string[] = [];
    const stub: typeof fetch = async (_url, init) => {
      issued += 1;
      bodies.push(String(init?.body ?? ''));
      await new Promise((resolve) => setImmediate(resolve));
      return json(200, { access_token: `token-${issued}`, token_type: 'Bearer', expires_in: 3600, scope: 'a' });
    };
    const client = createTokenBrokerClient({
      transport: {
        kind: 'http',
        baseUrl: 'https://abc.execute-api.us-east-1.amazonaws.com/v1/',
        region: 'us-east-1',
        credentials,
      },
      fetch: stub,
    });
    assert.equal((await client.getToken({ client: 'bwell' })).accessToken, 'token-1');
    const [forced, alsoForced, ordinary] = await Promise.all([
      client.getToken({ client: 'bwell', forceRefresh: true }),
      client.getToken({ client: 'bwell', forceRefresh: true }),
      client.getToken({ client: 'bwell' }),
    ]);
    assert.equal(forced.accessToken, 'token-2');
    assert.equal(alsoForced, forced);
    assert.equal(ordinary.accessToken, 'token-1', 'served from the cache while the forced request was out');
    assert.deepEqual(bodies, ['', '{"forceRefresh":true}']);
    assert.equal(await client.getToken({ client: 'bwell' }), forced);
    assert.equal(issued, 2);
  });

  it('minTtl is met by a token in the first half of its life, however much more is asked', async () => {
    let now = 1_000_000;
    let issued = 0;
    const bodies: string[] = [];
    const stub: typeof fetch = async (_url, init) => {
      issued += 1;
      bodies.push(String(init?.body ?? ''));
      return json(200, { access_token: `token-${issued}`, token_type: 'Bearer', expires_in: 1000, scope: 'a' });
    };
    const client = createTokenBrokerClient({
      transport: {
        kind: 'http',
        baseUrl: 'https://abc.execute-api.us-east-1.amazonaws.com/v1/',
        region: 'us-east-1',
        credentials,
      },
      fetch: stub,
      clock: () => now,
    });
    await client.getToken({ client: 'bwell', minTtl: 86_400 });
    now += 499_000;
    assert.equal((await client.getToken({ client: 'bwell', minTtl: 86_400 })).accessToken, 'token-1');
    assert.equal((await client.getToken({ client: 'bwell', minTtl: 400 })).accessToken, 'token-1');
    now += 200_000;
    assert.equal((await client.getToken({ client: 'bwell', minTtl: 400 })).accessToken, 'token-2');
    assert.deepEqual(bodies, ['{"minTtl":86400}', '{"minTtl":400}']);
    assert.equal(issued, 2);
  });

  it('refuses bad arguments without a request', async () => {
    const { client, calls } = stubbed(() => json(500, {}));
    await assert.rejects(client.getToken({ client: '' }), (error: unknown) =>
      isTokenBrokerError(error, 'invalid_request'),
    );
    for (const minTtl of [-1, 1.5, Number.NaN, '60'] as unknown as number[]) {
      await assert.rejects(client.getToken({ client: 'bwell', minTtl }), (error: unknown) =>
        isTokenBrokerError(error, 'invalid_request'),
      );
    }
    await assert.rejects(
      client.getToken({ client: 'bwell', forceRefresh: 'yes' as unknown as boolean }),
      (error: unknown) => isTokenBrokerError(error, 'invalid_request'),
    );
    assert.equal(calls(), 0);
    assert.throws(
      () =>
        createTokenBrokerClient({
          transport: { kind: 'http', baseUrl: 'https://x.example/v1', region: 'us-east-1', credentials },
          refreshWindowSeconds: -1,
        }),
      TypeError,
    );
    assert.throws(
      () => createTokenBrokerClient({ transport: { kind: 'http', baseUrl: 'ftp://x.example', region: 'us-east-1' } }),
      TypeError,
    );
  });

  it('joins the path onto a base URL with or without a trailing slash, and encodes the client', async () => {
    const seen: string[] = [];
    const record: typeof fetch = async (input) => {
      seen.push(String(input));
      return json(200, { access_token: 't', token_type: 'Bearer', expires_in: 3600, scope: 'a' });
    };
    for (const baseUrl of [
      'https://abc.execute-api.us-east-1.amazonaws.com/v1',
      'https://abc.execute-api.us-east-1.amazonaws.com/v1/',
    ]) {
      const client = createTokenBrokerClient({
        transport: { kind: 'http', baseUrl, region: 'us-east-1', credentials },
        fetch: record,
      });
      await client.getToken({ client: 'acme-labs' });
      await client.getToken({ client: 'a/b' });
    }
    assert.deepEqual(seen, [
      'https://abc.execute-api.us-east-1.amazonaws.com/v1/clients/acme-labs/token',
      'https://abc.execute-api.us-east-1.amazonaws.com/v1/clients/a%2Fb/token',
      'https://abc.execute-api.us-east-1.amazonaws.com/v1/clients/acme-labs/token',
      'https://abc.execute-api.us-east-1.amazonaws.com/v1/clients/a%2Fb/token',
    ]);
  });

  it('strips control characters from whatever the server sends before it goes into an error', async () => {
    const hostile = 'bad\u001b[2J\u001b]0;pwned\u0007 line\r\nFORGED: ok\u009b31m \u202eevil\u0000';
    const answers = [
      () => json(400, { error: 'invalid_scope', error_description: hostile }),
      () => json(403, { message: hostile }, { 'x-amzn-ErrorType': `Access\u001b[31mDenied` }),
    ];
    for (const answer of answers) {
      const { client } = stubbed(answer);
      await assert.rejects(client.getToken({ client: 'bwell' }), (error: unknown) => {
        assert.ok(error instanceof TokenBrokerError);
        for (const text of [error.message, error.description]) {
          // biome-ignore lint/suspicious/noControlCharactersInRegex: looking for control characters
          assert.doesNotMatch(text, /[\u0000-\u001f\u007f-\u009f\u202e]/, JSON.stringify(text));
          assert.match(text, /bad.*line FORGED: ok/);
        }
        return true;
      });
    }
  });

  it('refuses a base URL that is not absolute, not http(s), or plain http to a host other than loopback', () => {
    const refused: [unknown, RegExp][] = [
      ['http://abc123.execute-api.us-east-1.amazonaws.com/v1/', /plain http is allowed only to loopback.*use https/],
      ['http://10.0.0.5:8787', /plain http is allowed only to loopback/],
      ['http://127.0.0.1.nip.io:8787', /plain http is allowed only to loopback/],
      ['http://[::2]:8787', /plain http is allowed only to loopback/],
      ['/v1/', /baseUrl must be an absolute URL such as https:\/\/.*, got "\/v1\/"/],
      ['127.0.0.1:8787', /baseUrl must be an absolute URL/],
      ['localhost:8787', /not an http\(s\) URL \(localhost:\)/],
      ['', /baseUrl must be an absolute URL/],
      [undefined, /baseUrl must be an absolute URL.*got undefined/],
      ['https://user:pass@abc.example/v1', /must not contain credentials/],
    ];
    for (const [baseUrl, message] of refused) {
      assert.throws(
        () =>
          createTokenBrokerClient({
            transport: { kind: 'http', baseUrl: baseUrl as string, region: 'us-east-1', credentials },
          }),
        (error: unknown) => error instanceof TypeError && message.test(error.message),
        `baseUrl ${String(baseUrl)}`,
      );
    }
    for (const baseUrl of [
      'https://abc123.execute-api.us-east-1.amazonaws.com/v1/',
      'http://127.0.0.1:8787',
      'http://127.8.9.10:8787/',
      'http://localhost:8787',
      'http://[::1]:8787',
    ]) {
      createTokenBrokerClient({ transport: { kind: 'http', baseUrl, region: 'us-east-1', credentials } });
    }
  });

  it('does not follow a redirect: the signed request stays with the broker, and no token comes from elsewhere', async () => {
    let elsewhere = 0;
    const other = createServer((_request, response) => {
      elsewhere += 1;
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ access_token: 'planted', token_type: 'Bearer', expires_in: 3600, scope: 'a' }));
    });
    const otherPort = await listenOnLoopback(other);
    const redirecting = createServer((_request, response) => {
      response.writeHead(307, { location: `http://127.0.0.1:${otherPort}/clients/bwell/token` });
      response.end();
    });
    const port = await listenOnLoopback(redirecting);
    try {
      const client = createTokenBrokerClient({
        transport: { kind: 'http', baseUrl: `http://127.0.0.1:${port}`, region: 'us-east-1', credentials },
      });
      await assert.rejects(client.getToken({ client: 'bwell' }), (error: unknown) =>
        isTokenBrokerError(error, 'transport_error'),
      );
      assert.equal(elsewhere, 0);
    } finally {
      redirecting.close();
      other.close();
    }
  });
});
