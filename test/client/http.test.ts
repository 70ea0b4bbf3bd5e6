import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import {
  type BrokerToken,
  createTokenBrokerClient,
  type TokenBrokerClientOptions,
  TokenBrokerError,
} from '@token-broker/client';
import { type DevServerProcess, startDevServerProcess } from '../support/dev-server-process.js';
import { assertNoLeak } from '../support/logs.js';
import { closedPort, countingFetch, type SigningGateway, startSigningGateway } from './support.js';

const region = 'us-east-1';
const credentials = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'test-secret' };
const temporary = { accessKeyId: 'ASIATEMPORARY', secretAccessKey: 'temporary-secret', sessionToken: 'session-token' };
const authorizationShape =
  /^AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE\/\d{8}\/us-east-1\/execute-api\/aws4_request, SignedHeaders=[a-z0-9;-]+, Signature=[0-9a-f]{64}$/;

let devServer: DevServerProcess;

// Beside the embedded `demo`: a client that takes an audience and RFC 8707 resources.
const resource = { r4: 'https://fhir.test/r4', dstu2: 'https://fhir.test/dstu2' };
const targetedClients = {
  targeted: {
    wellKnownUrl: 'https://targeted.invalid/.well-known/openid-configuration',
    secretName: 'token-broker/targeted',
    scopes: ['t.read'],
    defaultScope: 't.read',
    audiences: ['https://api.test/'],
    resources: [resource.r4, resource.dstu2],
  },
};

/** The audience of a JWT access token, which the embedded provider issues for a resource server. */
function audienceOf(token: string): unknown {
  const part = token.split('.')[1] ?? '';
  return (JSON.parse(Buffer.from(part, 'base64url').toString('utf8')) as { aud?: unknown }).aud;
}
let gateway: SigningGateway;

function restore(name: string, value: string | undefined): void {
  if (value === undefined) delete process.env[name];
  else process.env[name] = value;
}

const sha256Hex = (text: string) => createHash('sha256').update(text).digest('hex');

function newClient(overrides: Partial<TokenBrokerClientOptions> = {}) {
  const counter = countingFetch(overrides.fetch);
  const client = createTokenBrokerClient({
    transport: { kind: 'http', baseUrl: gateway.baseUrl, region, credentials },
    ...overrides,
    fetch: counter.fetch,
  });
  return { client, calls: counter.calls };
}

function isBrokerError(code: string, status: number | undefined) {
  return (error: unknown) => {
    assert.ok(error instanceof TokenBrokerError, `expected a TokenBrokerError, got ${String(error)}`);
    assert.equal(error.code, code);
    assert.equal(error.status, status);
    return true;
  };
}

describe('token-broker client over HTTP, against the local dev server behind a SigV4-verifying gateway', () => {
  before(async () => {
    // API Gateway authorizes; the function behind it does not check signatures again.
    devServer = await startDevServerProcess({ TOKEN_BROKER_CLIENTS: JSON.stringify(targetedClients) }, ['--no-auth']);
    gateway = await startSigningGateway({ target: devServer.baseUrl, region, credentials: [credentials, temporary] });
  });

  after(async () => {
    await gateway?.close();
    await devServer?.close();
  });

  it('gets a token with a request signed by @smithy/signature-v4 that the gateway verifies', async () => {
    const { client, calls } = newClient();
    const before = gateway.verified.length;
    const token = await client.getToken({ client: 'demo' });

    assert.equal(token.tokenType, 'Bearer');
    assert.equal(token.scope, 'demo.read');
    assert.ok(token.accessToken.length > 10);
    assert.ok(token.expiresAt > Date.now() + 60_000);
    assert.deepEqual(calls, [`${gateway.baseUrl}clients/demo/token`]);

    assert.equal(gateway.verified.length, before + 1);
    const signed = gateway.verified.at(-1);
    assert.ok(signed);
    assert.equal(signed.method, 'POST');
    assert.equal(signed.path, '/v1/clients/demo/token');
    assert.match(signed.headers.authorization ?? '', authorizationShape);
    assert.match(signed.headers['x-amz-date'] ?? '', /^\d{8}T\d{6}Z$/);
    assert.equal(signed.headers['x-amz-content-sha256'], sha256Hex(''));
    assert.equal(signed.body, '');
    for (const name of ['host', 'x-amz-content-sha256', 'x-amz-date']) assert.ok(signed.signedHeaders.includes(name));
    assert.equal(signed.headers['x-amz-security-token'], undefined);
    assertNoLeak(devServer.output(), [token.accessToken]);
  });

  it('signs the JSON body, sends the normalized scope set and serves an equal set from memory', async () => {
    const { client, calls } = newClient();
    const token = await client.getToken({ client: 'demo', scope: 'demo.write demo.read  demo.read' });
    assert.equal(token.scope, 'demo.read demo.write');

    const signed = gateway.verified.at(-1);
    assert.ok(signed);
    assert.equal(signed.body, '{"scope":"demo.read demo.write"}');
    assert.equal(signed.headers['content-type'], 'application/json');
    assert.equal(signed.headers['x-amz-content-sha256'], sha256Hex(signed.body));
    assert.ok(signed.signedHeaders.includes('content-type'));

    assert.equal(await client.getToken({ client: 'demo', scope: 'demo.read demo.write' }), token);
    assert.equal(await client.getToken({ client: 'demo', scope: 'demo.write demo.write demo.read' }), token);
    assert.equal(calls.length, 1);
    // The default scope is a key of its own, even where it names the same scopes.
    await client.getToken({ client: 'demo' });
    assert.equal(calls.length, 2);
  });

  it('skips its cache on forceRefresh; the broker answers a token issued within 30 s with that same token', async () => {
    const { client, calls } = newClient();
    const refused = await client.getToken({ client: 'demo', scope: 'demo.write' });
    const answered = await client.getToken({ client: 'demo', scope: 'demo.write', forceRefresh: true });
    assert.equal(calls.length, 2);
    assert.equal(gateway.verified.at(-1)?.body, '{"scope":"demo.write","forceRefresh":true}');
    // The broker's rate limit: a token this new is what a forced refresh just fetched, so no new call upstream.
    assert.equal(answered.accessToken, refused.accessToken);
    assert.equal(await client.getToken({ client: 'demo', scope: 'demo.write', forceRefresh: false }), answered);
    assert.equal(calls.length, 2);
  });

  it('serves minTtl from its cache while the token has that long left, and otherwise sends minTtl to the broker', async () => {
    let shiftMs = 0;
    const { client, calls } = newClient({ clock: () => Date.now() + shiftMs });
    const token = await client.getToken({ client: 'demo', scope: 'demo.read demo.write' });
    const lifetimeMs = token.expiresAt - Date.now();
    assert.equal(await client.getToken({ client: 'demo', scope: 'demo.read demo.write', minTtl: 600 }), token);
    assert.equal(calls.length, 1);
    // 500 s left on the client's clock: not enough for 600 s, so the broker is asked, with minTtl in the body.
    shiftMs = lifetimeMs - 500_000;
    const renewed = await client.getToken({ client: 'demo', scope: 'demo.read demo.write', minTtl: 600 });
    assert.equal(calls.length, 2);
    assert.equal(gateway.verified.at(-1)?.body, '{"scope":"demo.read demo.write","minTtl":600}');
    assert.ok(renewed.expiresAt - Date.now() - shiftMs >= 600_000);
    assert.equal(await client.getToken({ client: 'demo', scope: 'demo.read demo.write', minTtl: 600 }), renewed);
    assert.equal(calls.length, 2);
  });

  it('signs audience and resource into the body, and keeps one token per audience and resource', async () => {
    const { client, calls } = newClient();
    const r4 = await client.getToken({ client: 'targeted', resource: resource.r4 });
    assert.equal(gateway.verified.at(-1)?.body, `{"resource":"${resource.r4}"}`);
    assert.equal(audienceOf(r4.accessToken), resource.r4);
    const dstu2 = await client.getToken({ client: 'targeted', resource: resource.dstu2 });
    assert.equal(audienceOf(dstu2.accessToken), resource.dstu2);
    const api = await client.getToken({ client: 'targeted', scope: 't.read', audience: 'https://api.test/' });
    assert.equal(gateway.verified.at(-1)?.body, '{"scope":"t.read","audience":"https://api.test/"}');
    const plain = await client.getToken({ client: 'targeted' });
    assert.equal(calls.length, 4);
    assert.equal(new Set([r4, dstu2, api, plain].map((token) => token.accessToken)).size, 4);

    assert.equal(await client.getToken({ client: 'targeted', resource: resource.r4 }), r4);
    assert.equal(await client.getToken({ client: 'targeted', resource: resource.dstu2 }), dstu2);
    assert.equal(await client.getToken({ client: 'targeted', scope: 't.read', audience: 'https://api.test/' }), api);
    assert.equal(calls.length, 4);
    assertNoLeak(devServer.output(), [r4.accessToken, dstu2.accessToken, api.accessToken, plain.accessToken]);
  });

  it('raises invalid_target for a resource or audience the client does not list, and does not cache it', async () => {
    const { client, calls } = newClient();
    const refused = isBrokerError('invalid_target', 400);
    await assert.rejects(client.getToken({ client: 'targeted', resource: 'https://other.test/' }), refused);
    await assert.rejects(client.getToken({ client: 'targeted', resource: 'https://other.test/' }), refused);
    await assert.rejects(client.getToken({ client: 'demo', audience: 'https://api.test/' }), refused);
    assert.equal(calls.length, 3);
    await assert.rejects(
      client.getToken({ client: 'targeted', audience: 7 as unknown as string }),
      isBrokerError('invalid_request', undefined),
    );
    assert.equal(calls.length, 3);
  });

  it('answers a second call from memory, without a second request', async () => {
    const { client, calls } = newClient();
    const first = await client.getToken({ client: 'demo' });
    const verified = gateway.verified.length;
    const second = await client.getToken({ client: 'demo' });
    assert.equal(second.accessToken, first.accessToken);
    assert.equal(calls.length, 1);
    assert.equal(gateway.verified.length, verified);
  });

  it('shares one request among concurrent callers of the same key', async () => {
    const { client, calls } = newClient();
    const same = Array.from({ length: 10 }, (_, index) =>
      client.getToken({ client: 'demo', scope: index % 2 === 0 ? 'demo.read demo.write' : 'demo.write demo.read' }),
    );
    const other = client.getToken({ client: 'demo', scope: 'demo.write' });
    const tokens = await Promise.all(same);
    assert.equal(new Set(tokens.map((token) => token.accessToken)).size, 1);
    assert.equal((await other).scope, 'demo.write');
    assert.equal(calls.length, 2);
  });

  it('refreshes once the refresh window is reached, counting the lifetime from when the request was sent', async () => {
    let now = Date.UTC(2030, 0, 1);
    const sentAt: number[] = [];
    const expiresIn: number[] = [];
    // 5 s pass on the client's clock while each request is under way.
    const slow: typeof fetch = async (input, init) => {
      sentAt.push(now);
      now += 5_000;
      const response = await fetch(input, init);
      expiresIn.push(((await response.clone().json()) as { expires_in: number }).expires_in);
      return response;
    };
    const { client, calls } = newClient({ clock: () => now, fetch: slow });

    const first = await client.getToken({ client: 'demo' });
    assert.equal(first.expiresAt, (sentAt[0] ?? 0) + (expiresIn[0] ?? 0) * 1000);

    now = first.expiresAt - 60_000 - 1;
    assert.equal(await client.getToken({ client: 'demo' }), first);
    assert.equal(calls.length, 1);

    now = first.expiresAt - 60_000;
    const renewed = await client.getToken({ client: 'demo' });
    assert.equal(calls.length, 2);
    assert.equal(renewed.expiresAt, (sentAt[1] ?? 0) + (expiresIn[1] ?? 0) * 1000);
    assert.ok(renewed.expiresAt > first.expiresAt);
  });

  it('honours refreshWindowSeconds', async () => {
    let now = Date.UTC(2030, 0, 1);
    const { client, calls } = newClient({ clock: () => now, refreshWindowSeconds: 300 });
    const first = await client.getToken({ client: 'demo' });
    now = first.expiresAt - 300_001;
    await client.getToken({ client: 'demo' });
    assert.equal(calls.length, 1);
    now = first.expiresAt - 299_999;
    await client.getToken({ client: 'demo' });
    assert.equal(calls.length, 2);
  });

  it('raises typed errors for invalid_scope and unknown_client, and does not cache them', async () => {
    const { client, calls } = newClient();
    for (let attempt = 0; attempt < 2; attempt++) {
      await assert.rejects(client.getToken({ client: 'demo', scope: 'admin demo.read' }), (error: unknown) => {
        isBrokerError('invalid_scope', 400)(error);
        assert.ok(error instanceof TokenBrokerError);
        assert.match(error.description, /not allowed scope admin/);
        assert.equal(error.client, 'demo');
        return true;
      });
    }
    assert.equal(calls.length, 2);
    await assert.rejects(client.getToken({ client: 'demo', scope: '   ' }), isBrokerError('invalid_scope', 400));
    await assert.rejects(client.getToken({ client: 'nobody' }), isBrokerError('unknown_client', 404));
    // A failure leaves nothing behind: the same client then succeeds.
    assert.equal((await client.getToken({ client: 'demo', scope: 'demo.read' })).scope, 'demo.read');
  });

  it('uses the default credential chain when no credentials are given', async () => {
    const names = ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN'] as const;
    const saved = names.map((name) => [name, process.env[name]] as const);
    process.env.AWS_ACCESS_KEY_ID = credentials.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = credentials.secretAccessKey;
    delete process.env.AWS_SESSION_TOKEN;
    try {
      const client = createTokenBrokerClient({ transport: { kind: 'http', baseUrl: gateway.baseUrl, region } });
      await client.getToken({ client: 'demo' });
      assert.equal(gateway.verified.at(-1)?.accessKeyId, 'AKIDEXAMPLE');
    } finally {
      for (const [name, value] of saved) restore(name, value);
    }
  });

  it('signs temporary credentials from a provider together with their session token', async () => {
    let resolved = 0;
    const provider = async () => {
      resolved += 1;
      return temporary;
    };
    const client = createTokenBrokerClient({
      transport: { kind: 'http', baseUrl: gateway.baseUrl, region, credentials: provider },
    });
    await client.getToken({ client: 'demo', scope: 'demo.write' });
    const signed = gateway.verified.at(-1);
    assert.equal(signed?.accessKeyId, 'ASIATEMPORARY');
    assert.equal(signed?.headers['x-amz-security-token'], 'session-token');
    assert.ok(signed?.signedHeaders.includes('x-amz-security-token'));
    assert.ok(resolved >= 1);
  });

  it('a request signed with the wrong secret, or altered after signing, is refused before the broker', async () => {
    const verified = gateway.verified.length;
    const wrong = createTokenBrokerClient({
      transport: {
        kind: 'http',
        baseUrl: gateway.baseUrl,
        region,
        credentials: { ...credentials, secretAccessKey: 'x' },
      },
    });
    await assert.rejects(wrong.getToken({ client: 'demo' }), (error: unknown) => {
      isBrokerError('transport_error', 403)(error);
      assert.match((error as TokenBrokerError).description, /API Gateway \(InvalidSignatureException\)/);
      assert.match((error as TokenBrokerError).description, /signature we calculated does not match/);
      return true;
    });

    const tampering: typeof fetch = (input, init) => fetch(input, { ...init, body: '{"scope":"demo.write"}' });
    const { client } = newClient({ fetch: tampering });
    await assert.rejects(client.getToken({ client: 'demo', scope: 'demo.read' }), (error: unknown) => {
      isBrokerError('transport_error', 403)(error);
      assert.match((error as TokenBrokerError).description, /x-amz-content-sha256 is not the body/);
      return true;
    });
    assert.equal(gateway.verified.length, verified);
  });

  it('a network failure is a transport_error without a status', async () => {
    const client = createTokenBrokerClient({
      transport: { kind: 'http', baseUrl: `http://127.0.0.1:${await closedPort()}/v1`, region, credentials },
    });
    await assert.rejects(client.getToken({ client: 'demo' }), (error: unknown) => {
      isBrokerError('transport_error', undefined)(error);
      assert.match((error as TokenBrokerError).description, /the request to the broker failed/);
      assert.ok((error as TokenBrokerError).cause instanceof Error);
      return true;
    });
  });

  it('clear() forgets cached tokens', async () => {
    const { client, calls } = newClient();
    const first: BrokerToken = await client.getToken({ client: 'demo' });
    client.clear();
    const second = await client.getToken({ client: 'demo' });
    assert.notEqual(second, first);
    assert.equal(calls.length, 2);
  });
});

describe('token-broker client over HTTP, straight at npm start with the key pair it printed', () => {
  let server: DevServerProcess;

  before(async () => {
    server = await startDevServerProcess();
  });

  after(async () => {
    await server?.close();
  });

  it("gets a token with the default credential chain once the server's variables are exported", async () => {
    const caller = server.caller;
    assert.ok(caller !== undefined);
    const names = ['AWS_PROFILE', 'AWS_SESSION_TOKEN', ...Object.keys(caller.environment)];
    const saved = names.map((name) => [name, process.env[name]] as const);
    delete process.env.AWS_PROFILE;
    delete process.env.AWS_SESSION_TOKEN;
    Object.assign(process.env, caller.environment);
    try {
      const client = createTokenBrokerClient({ transport: { kind: 'http', baseUrl: server.baseUrl, region } });
      const token = await client.getToken({ client: 'demo', scope: 'demo.write' });
      assert.equal(token.scope, 'demo.write');
    } finally {
      for (const [name, value] of saved) restore(name, value);
    }
    const stranger = createTokenBrokerClient({
      transport: { kind: 'http', baseUrl: server.baseUrl, region, credentials },
    });
    await assert.rejects(stranger.getToken({ client: 'demo' }), (error: unknown) => {
      isBrokerError('access_denied', 403)(error);
      assert.match((error as TokenBrokerError).description, /SigV4-signed .* with the credentials it printed at start/);
      return true;
    });
  });
});
