/**
 * The fault-injection proxy itself, driven with plain fetch (and oauth4webapi for discovery validation):
 * pass-through to a real oidc-provider, each fault kind, the discovery rewrite and the counters.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, afterEach, before, describe, it } from 'node:test';
import * as oauth from 'oauth4webapi';
import { type LocalOidcServer, type LocalSecretClient, startOidcServer } from '../../lambdas/local/oidc-server.js';
import { delay, type FaultProxy, json, rewrite, startFaultProxy } from '../support/fault-proxy.js';
import { loadTestTls } from '../support/tls.js';

const client: LocalSecretClient = {
  clientId: 'proxy-client',
  clientSecret: randomBytes(24).toString('base64url'),
  authMethod: 'client_secret_post',
  scopes: ['system/*.read'],
};

let oidc: LocalOidcServer;
let proxy: FaultProxy;

function tokenRequest(init: { signal?: AbortSignal } = {}): Promise<Response> {
  return fetch(proxy.tokenEndpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'client_credentials',
      scope: 'system/*.read',
      client_id: client.clientId,
      client_secret: client.clientSecret,
    }),
    ...init,
  });
}

async function discovery(): Promise<Record<string, unknown>> {
  const response = await fetch(proxy.wellKnownUrl);
  assert.equal(response.status, 200);
  return (await response.json()) as Record<string, unknown>;
}

async function assertRealToken(response: Response): Promise<string> {
  assert.equal(response.status, 200);
  const body = (await response.json()) as Record<string, unknown>;
  assert.equal(typeof body.access_token, 'string');
  assert.equal(String(body.token_type).toLowerCase(), 'bearer');
  assert.equal(body.scope, 'system/*.read');
  return body.access_token as string;
}

describe('fault proxy in front of oidc-provider', () => {
  before(async () => {
    const { key, cert } = loadTestTls();
    oidc = await startOidcServer({ clients: [client], tls: { key, cert } });
    proxy = await startFaultProxy(oidc);
  });
  afterEach(() => {
    proxy.reset();
  });
  after(async () => {
    await proxy.close();
    await oidc.close();
  });

  it('serves a discovery document naming the proxy, issuer and token endpoint on different hosts', async () => {
    assert.match(proxy.issuer, /^https:\/\/localhost:\d+$/);
    assert.equal(proxy.wellKnownUrl, `${proxy.issuer}/.well-known/openid-configuration`);
    const port = new URL(proxy.issuer).port;
    assert.notEqual(port, new URL(oidc.issuer).port);
    assert.equal(proxy.tokenEndpoint, `https://127.0.0.1:${port}/token`);

    const document = await discovery();
    assert.equal(document.issuer, proxy.issuer);
    assert.equal(document.token_endpoint, proxy.tokenEndpoint);
    assert.ok((document.grant_types_supported as string[]).includes('client_credentials'));
    // Other URLs on the upstream's origin are rewritten too, and forwarded when fetched.
    assert.equal(new URL(document.jwks_uri as string).origin, proxy.issuer);
    const jwks = await fetch(document.jwks_uri as string);
    assert.equal(jwks.status, 200);
    assert.ok(Array.isArray(((await jwks.json()) as { keys: unknown }).keys));
    assert.equal(proxy.received('discovery'), 1);
    assert.equal(proxy.forwarded('discovery'), 1);
  });

  it('passes a validating OAuth client: discovery matches the issuer, a real token comes back', async () => {
    const issuer = new URL(proxy.issuer);
    const server = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer));
    assert.equal(server.token_endpoint, proxy.tokenEndpoint);
    const response = await oauth.clientCredentialsGrantRequest(
      server,
      { client_id: client.clientId },
      oauth.ClientSecretPost(client.clientSecret),
      new URLSearchParams({ scope: 'system/*.read' }),
    );
    const result = await oauth.processClientCredentialsResponse(server, { client_id: client.clientId }, response);
    assert.equal(typeof result.access_token, 'string');
    assert.equal(result.token_type, 'bearer');
  });

  it('forwards a token request (client_secret_post) to oidc-provider and counts it', async () => {
    const before = oidc.tokenRequests();
    await assertRealToken(await tokenRequest());
    assert.equal(oidc.tokenRequests(), before + 1);
    assert.equal(proxy.received('token'), 1);
    assert.equal(proxy.forwarded('token'), 1);
    assert.equal(proxy.received('discovery'), 0);
  });

  it('answers queued status faults once each, in order, then passes again', async () => {
    const before = oidc.tokenRequests();
    proxy.next(
      'token',
      { status: 503, headers: { 'Retry-After': '2' } },
      { status: 429, body: { error: 'slow_down' }, headers: { 'retry-after': '1' } },
      { status: 500, body: 'internal error' },
    );
    assert.equal(proxy.pending('token'), 3);

    const unavailable = await tokenRequest();
    assert.equal(unavailable.status, 503);
    assert.equal(unavailable.headers.get('retry-after'), '2');
    assert.equal(await unavailable.text(), '');

    const throttled = await tokenRequest();
    assert.equal(throttled.status, 429);
    assert.equal(throttled.headers.get('retry-after'), '1');
    assert.match(throttled.headers.get('content-type') ?? '', /^application\/json/);
    assert.deepEqual(await throttled.json(), { error: 'slow_down' });

    const failed = await tokenRequest();
    assert.equal(failed.status, 500);
    assert.match(failed.headers.get('content-type') ?? '', /^text\/plain/);
    assert.equal(await failed.text(), 'internal error');

    assert.equal(proxy.pending('token'), 0);
    await assertRealToken(await tokenRequest());
    assert.equal(proxy.received('token'), 4);
    assert.equal(proxy.forwarded('token'), 1);
    assert.equal(oidc.tokenRequests(), before + 1);
  });

  it('keeps a sticky default until reset, with queued faults taking precedence', async () => {
    proxy.always('token', { status: 500, body: { error: 'server_error' } });
    proxy.next('token', json({ queued: true }));
    assert.deepEqual(await (await tokenRequest()).json(), { queued: true });
    for (let i = 0; i < 2; i += 1) {
      const response = await tokenRequest();
      assert.equal(response.status, 500);
      assert.deepEqual(await response.json(), { error: 'server_error' });
    }
    assert.equal(proxy.forwarded('token'), 0);

    proxy.reset();
    assert.equal(proxy.received('token'), 0);
    await assertRealToken(await tokenRequest());
    assert.equal(proxy.forwarded('token'), 1);
  });

  it('programs the two routes independently', async () => {
    proxy.next('discovery', { status: 404 });
    await assertRealToken(await tokenRequest());
    assert.equal((await fetch(proxy.wellKnownUrl)).status, 404);
    await discovery();
    assert.deepEqual(
      [proxy.received('discovery'), proxy.forwarded('discovery'), proxy.received('token'), proxy.forwarded('token')],
      [2, 1, 1, 1],
    );
  });

  it('hangs: no answer until the client gives up; nothing is forwarded', async () => {
    proxy.next('token', 'hang');
    const started = Date.now();
    await assert.rejects(tokenRequest({ signal: AbortSignal.timeout(300) }), { name: 'TimeoutError' });
    assert.ok(Date.now() - started >= 290);
    assert.equal(proxy.received('token'), 1);
    assert.equal(proxy.forwarded('token'), 0);
    // The next request is served normally.
    await assertRealToken(await tokenRequest());
  });

  it('resets the connection mid-request: fetch fails with ECONNRESET', async () => {
    proxy.next('token', 'reset');
    const before = oidc.tokenRequests();
    await assert.rejects(tokenRequest(), (error: unknown) => {
      assert.ok(error instanceof TypeError);
      assert.equal((error.cause as { code?: string } | undefined)?.code, 'ECONNRESET');
      return true;
    });
    proxy.next('discovery', 'reset');
    await assert.rejects(fetch(proxy.wellKnownUrl), TypeError);
    assert.equal(oidc.tokenRequests(), before);
    assert.equal(proxy.forwarded('token'), 0);
    await assertRealToken(await tokenRequest());
  });

  it('answers garbage: 200 with an HTML page', async () => {
    proxy.next('discovery', 'garbage');
    const response = await fetch(proxy.wellKnownUrl);
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type') ?? '', /^text\/html/);
    const text = await response.text();
    assert.match(text, /^<!DOCTYPE html>/);
    assert.throws(() => JSON.parse(text), SyntaxError);
  });

  it('answers JSON bodies of the test’s choice, including invalid token responses and huge ones', async () => {
    const invalid = [
      { access_token: 'x', token_type: 'mac', expires_in: 3600 },
      { access_token: 'x', token_type: 'Bearer', expires_in: -5 },
      { access_token: 'x', token_type: 'Bearer', expires_in: 1.5 },
      { access_token: 'x', token_type: 'Bearer', expires_in: '3600' },
      { access_token: 'x', token_type: 'Bearer', expires_in: 1e12 },
      { token_type: 'Bearer', expires_in: 3600 },
    ];
    proxy.next('token', ...invalid.map((body) => json(body)));
    for (const body of invalid) {
      const response = await tokenRequest();
      assert.equal(response.status, 200);
      assert.match(response.headers.get('content-type') ?? '', /^application\/json/);
      assert.deepEqual(await response.json(), body);
    }

    const huge = { access_token: 'a'.repeat(5 * 1024 * 1024), token_type: 'Bearer', expires_in: 3600 };
    proxy.next('token', json(huge));
    const response = await tokenRequest();
    const text = await response.text();
    assert.equal(Number(response.headers.get('content-length')), text.length);
    assert.ok(text.length > 5 * 1024 * 1024);
    assert.equal((JSON.parse(text) as { access_token: string }).access_token.length, huge.access_token.length);
    assert.equal(proxy.forwarded('token'), 0);
  });

  it('delays, then passes (or applies the fault it was given)', async () => {
    proxy.next('token', delay(250), delay(100, { status: 502 }));
    let started = Date.now();
    await assertRealToken(await tokenRequest());
    assert.ok(Date.now() - started >= 240, 'the first request was delayed');
    started = Date.now();
    assert.equal((await tokenRequest()).status, 502);
    assert.ok(Date.now() - started >= 90, 'the second request was delayed');
    assert.equal(proxy.forwarded('token'), 1);

    // A client that gives up during the delay is not forwarded.
    proxy.next('token', delay(300));
    await assert.rejects(tokenRequest({ signal: AbortSignal.timeout(50) }), { name: 'TimeoutError' });
    await new Promise((resolve) => setTimeout(resolve, 400));
    assert.equal(proxy.forwarded('token'), 1);
  });

  it('serves custom discovery documents: a wrong issuer, an http token_endpoint', async () => {
    const wrongIssuer = rewrite((document) => ({ ...document, issuer: 'https://someone-else.example' }));
    proxy.next(
      'discovery',
      wrongIssuer,
      wrongIssuer,
      rewrite((document) => ({
        ...document,
        token_endpoint: String(document.token_endpoint).replace(/^https:/, 'http:'),
      })),
    );
    const wrong = await discovery();
    assert.equal(wrong.issuer, 'https://someone-else.example');
    assert.equal(wrong.token_endpoint, proxy.tokenEndpoint);
    const issuer = new URL(proxy.issuer);
    await assert.rejects(
      oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer)),
      (error: unknown) => error instanceof oauth.OperationProcessingError,
    );

    const plainHttp = await discovery();
    assert.equal(plainHttp.issuer, proxy.issuer);
    assert.equal(plainHttp.token_endpoint, proxy.tokenEndpoint.replace('https:', 'http:'));
    assert.equal(proxy.forwarded('discovery'), 3);
    assert.equal(proxy.pending('discovery'), 0);

    proxy.always('discovery', json({ issuer: proxy.issuer }));
    assert.deepEqual(await discovery(), { issuer: proxy.issuer });
    assert.equal(proxy.forwarded('discovery'), 3);
  });

  it('rewrites a real token response', async () => {
    proxy.next(
      'token',
      rewrite((body) => ({ ...body, token_type: 'mac' })),
    );
    const before = oidc.tokenRequests();
    const body = (await (await tokenRequest()).json()) as Record<string, unknown>;
    assert.equal(body.token_type, 'mac');
    assert.equal(typeof body.access_token, 'string');
    assert.equal(oidc.tokenRequests(), before + 1);
  });

  it('destroys hung sockets on close, so closing never waits for them', async () => {
    const own = await startFaultProxy(oidc);
    own.always('token', 'hang');
    const pending = fetch(own.tokenEndpoint, { method: 'POST', body: 'grant_type=client_credentials' });
    while (own.received('token') === 0) await new Promise((resolve) => setTimeout(resolve, 10));
    const started = Date.now();
    await own.close();
    assert.ok(Date.now() - started < 1000);
    await assert.rejects(pending, TypeError);
  });
});
