import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { ttlAttribute } from '../../lambdas/adapters/dynamodb-schema.js';
import { BrokerError } from '../../lambdas/core/errors.js';
import { apiGatewayAliasName } from '../../lambdas/entry/invoke.js';
import {
  type BrokerHarness,
  callerArn,
  certificateDer,
  httpEvent,
  startBrokerHarness,
} from '../support/broker-harness.js';
import { assertNoLeak } from '../support/logs.js';
import { loadTestTls } from '../support/tls.js';

let harness: BrokerHarness;
const issuedTokens: string[] = [];

async function fetchOk(client: string, scope?: string) {
  const answer = await harness.http(client, { body: scope === undefined ? null : JSON.stringify({ scope }) });
  assert.equal(answer.statusCode, 200, answer.body);
  issuedTokens.push(answer.json.access_token as string);
  return answer;
}

async function refusedWith(
  answer: Promise<{ statusCode: number; json: Record<string, unknown> }>,
  status: number,
  code: string,
) {
  const { statusCode, json } = await answer;
  assert.equal(statusCode, status, JSON.stringify(json));
  assert.equal(json.error, code);
  assert.equal(typeof json.error_description, 'string');
  assert.deepEqual(Object.keys(json).sort(), ['error', 'error_description']);
  return json.error_description as string;
}

describe('the broker against dynalite, oidc-provider over TLS and Secrets Manager', () => {
  before(async () => {
    harness = await startBrokerHarness();
  });
  after(async () => {
    const logs = harness.output.text();
    await harness.close();
    assert.ok(logs.includes('token served'), 'the handler logged its answers');
    assertNoLeak(logs, [...harness.secrets(), ...issuedTokens]);
  });

  it('discovers a token endpoint on another host than the issuer and fetches a token from it', async () => {
    const issuerHost = new URL(harness.oidc.issuer).host;
    const tokenHost = new URL(harness.oidc.tokenEndpoint).host;
    assert.notEqual(tokenHost, issuerHost);
    const before = harness.oidc.tokenRequests();
    const answer = await fetchOk('bwell');
    assert.equal(harness.oidc.tokenRequests(), before + 1);
    assert.deepEqual(Object.keys(answer.json).sort(), ['access_token', 'expires_in', 'scope', 'token_type']);
    assert.equal(answer.json.token_type, 'Bearer');
    assert.equal(answer.json.scope, 'system/*.read');
    assert.ok((answer.json.expires_in as number) > 3500 && (answer.json.expires_in as number) <= 3600);
    assert.equal(answer.headers?.['Cache-Control'], 'no-store');
  });

  it('authenticates with client_secret_basic, client_secret_post, and the method discovery offers', async () => {
    const before = harness.oidc.tokenRequests();
    await fetchOk('basic');
    await fetchOk('discovered', 'system/*.write');
    assert.equal(harness.oidc.tokenRequests(), before + 2);
  });

  it('answers cache hits without calling the token endpoint, from memory and from the table', async () => {
    await fetchOk('bwell', 'system/*.write');
    const before = harness.oidc.tokenRequests();
    await fetchOk('bwell', 'system/*.write');
    harness.restartContainer();
    await fetchOk('bwell', 'system/*.write');
    assert.equal(harness.oidc.tokenRequests(), before);
  });

  it('shares one token between scope strings naming the same set', async () => {
    const first = await fetchOk('bwell', 'system/*.write system/*.read system/*.write');
    const before = harness.oidc.tokenRequests();
    const second = await fetchOk('bwell', 'system/*.read system/*.write');
    assert.equal(second.json.access_token, first.json.access_token);
    assert.equal(harness.oidc.tokenRequests(), before);
  });

  it('stores the TTL attribute as issue time plus expires_in, in epoch seconds', async () => {
    const issuedAt = harness.clock.now();
    const answer = await fetchOk('basic', 'system/*.read');
    const item = await harness.storedItem('basic#system/*.read');
    const expiresAt = Number(item?.[ttlAttribute]?.N);
    const expiresIn = answer.json.expires_in as number;
    assert.ok(Math.abs(expiresAt - (Math.floor(issuedAt / 1000) + expiresIn)) <= 1);
    const sealed = Buffer.from(item?.sealed?.B ?? []);
    assert.ok(sealed.length > 0);
    assert.equal(
      sealed.includes(Buffer.from(answer.json.access_token as string)),
      false,
      'the token is sealed at rest',
    );
    assert.equal(item?.format?.N, '2');
    assert.equal(item?.pending, undefined, 'published: checked against the revocation marker');
  });

  it('refreshes a token once it is inside the refresh window, in every container', async () => {
    const first = await fetchOk('discovered', 'system/*.read');
    const lifetime = first.json.expires_in as number;
    harness.clock.advance((lifetime - 60) * 1000 + 1_000);
    const before = harness.oidc.tokenRequests();
    const second = await fetchOk('discovered', 'system/*.read');
    assert.notEqual(second.json.access_token, first.json.access_token);
    assert.equal(harness.oidc.tokenRequests(), before + 1);
    harness.restartContainer();
    const third = await fetchOk('discovered', 'system/*.read');
    assert.equal(third.json.access_token, second.json.access_token);
    assert.equal(harness.oidc.tokenRequests(), before + 1);
  });

  it('makes one upstream call for concurrent requests of a cold key', async () => {
    const before = harness.oidc.tokenRequests();
    const answers = await Promise.all(Array.from({ length: 20 }, () => harness.http('burst')));
    assert.deepEqual(new Set(answers.map((answer) => answer.statusCode)), new Set([200]));
    assert.equal(new Set(answers.map((answer) => answer.json.access_token)).size, 1);
    assert.equal(harness.oidc.tokenRequests(), before + 1);
    issuedTokens.push(answers[0]?.json.access_token as string);
  });

  it('refuses malformed bodies with invalid_request', async () => {
    await refusedWith(harness.http('bwell', { body: '{not json' }), 400, 'invalid_request');
    await refusedWith(harness.http('bwell', { body: '["system/*.read"]' }), 400, 'invalid_request');
    await refusedWith(harness.http('bwell', { body: '{"scope": 42}' }), 400, 'invalid_request');
    await refusedWith(harness.http('bwell', { body: '{"__proto__": {"admin": true}}' }), 400, 'invalid_request');
    await refusedWith(
      harness.http('bwell', { body: 'scope=x', headers: { 'content-type': 'application/x-www-form-urlencoded' } }),
      400,
      'invalid_request',
    );
    await refusedWith(
      harness.http('bwell', { body: JSON.stringify({ scope: 'a'.repeat(5000) }) }),
      400,
      'invalid_request',
    );
  });

  it('refuses scopes the client is not allowed with invalid_scope', async () => {
    const before = harness.oidc.tokenRequests();
    const description = await refusedWith(
      harness.http('basic', { body: '{"scope":"system/*.write"}' }),
      400,
      'invalid_scope',
    );
    assert.match(description, /basic/);
    await refusedWith(harness.http('bwell', { body: '{"scope":"system/*.read\\u0007"}' }), 400, 'invalid_scope');
    assert.equal(harness.oidc.tokenRequests(), before);
  });

  it('refuses an unknown client with unknown_client, and other methods and routes', async () => {
    await refusedWith(harness.http('nobody'), 404, 'unknown_client');
    await refusedWith(harness.http('bwell', { method: 'GET' }), 405, 'method_not_allowed');
  });

  it('refuses an event without an IAM caller identity with access_denied', async () => {
    await refusedWith(harness.http('bwell', { caller: null }), 403, 'access_denied');
  });

  it('reports a token endpoint refusal as upstream_error with its OAuth error code', async () => {
    const description = await refusedWith(harness.http('revoked'), 502, 'upstream_error');
    assert.match(description, /invalid_client/);
    assert.match(description, /revoked/);
  });

  it('reports a token endpoint that does not answer in time as upstream_timeout', async () => {
    await refusedWith(harness.http('stalled'), 504, 'upstream_timeout');
  });

  it('reports a secret that does not exist as unavailable, naming the client', async () => {
    const description = await refusedWith(harness.http('missing'), 503, 'unavailable');
    assert.match(description, /missing/);
  });

  it('reports a Secrets Manager outage as unavailable when no token is cached', async () => {
    harness.restartContainer();
    harness.secretsManager.failNext(10, 'InternalServiceError');
    await refusedWith(harness.http('outage'), 503, 'unavailable');
    harness.secretsManager.failNext(0);
  });

  it('reuses the last secret it read while Secrets Manager is down', async () => {
    await fetchOk('bwell');
    // Past the bound on how long a secret is kept, a new key needs the secret again.
    harness.clock.advance(6 * 60_000);
    harness.secretsManager.failNext(10, 'InternalServiceError');
    const calls = harness.secretsManager.getSecretValueCalls();
    await fetchOk('bwell', 'system/*.write');
    assert.ok(harness.secretsManager.getSecretValueCalls() > calls, 'Secrets Manager was asked and failed');
    harness.secretsManager.failNext(0);
  });

  it('serves a direct invocation through the alias named after the client', async () => {
    const token = (await harness.invoke({ client: 'bwell', scope: 'system/*.read' }, 'bwell')) as unknown as Record<
      string,
      unknown
    >;
    assert.deepEqual(Object.keys(token).sort(), ['access_token', 'expires_in', 'scope', 'token_type']);
    issuedTokens.push(token.access_token as string);
  });

  it('refuses unqualified, version-qualified and other-alias direct invocations with access_denied', async () => {
    for (const qualifier of [undefined, '$LATEST', '7', 'basic']) {
      await assert.rejects(
        harness.invoke({ client: 'bwell' }, qualifier),
        (error: unknown) => error instanceof BrokerError && error.name === 'access_denied',
      );
    }
  });

  it('throws errors named by their code for bad direct invocations', async () => {
    const cases: [unknown, string, string | undefined][] = [
      [{ client: 'bwell', scope: 7 }, 'invalid_request', 'bwell'],
      [{ client: 'bwell', extra: true }, 'invalid_request', 'bwell'],
      [[1, 2], 'invalid_request', 'bwell'],
      [{ client: 'bwell', scope: 'admin' }, 'invalid_scope', 'bwell'],
      [{ client: 'nobody' }, 'unknown_client', 'nobody'],
    ];
    for (const [event, code, alias] of cases) {
      await assert.rejects(
        harness.invoke(event, alias),
        (error: unknown) => error instanceof Error && error.name === code,
      );
    }
  });

  it('drops every cached token of a client on DELETE, in memory and in the table', async () => {
    const before = await fetchOk('basic', 'system/*.read');
    const calls = harness.oidc.tokenRequests();
    const dropped = await harness.http('basic', { method: 'DELETE' });
    assert.equal(dropped.statusCode, 200);
    assert.equal(dropped.json.client, 'basic');
    assert.ok((dropped.json.dropped as number) >= 1);
    assert.equal(await harness.storedItem('basic#system/*.read'), undefined);
    const after = await fetchOk('basic', 'system/*.read');
    assert.notEqual(after.json.access_token, before.json.access_token);
    assert.equal(harness.oidc.tokenRequests(), calls + 1);
  });

  it('makes other containers drop their copies of revoked tokens within the revocation check interval', async () => {
    const first = await fetchOk('discovered', 'system/*.write');
    // Another container revokes the client; this one learns of it at its next background check.
    await harness.invokeOther({ action: 'invalidate', client: 'discovered' }, 'discovered_admin');
    harness.clock.advance(31_000);
    await fetchOk('discovered', 'system/*.write');
    await new Promise((resolve) => setTimeout(resolve, 100));
    const after = await fetchOk('discovered', 'system/*.write');
    assert.notEqual(after.json.access_token, first.json.access_token);
  });

  it('serves invalidation by direct invoke only through the client admin alias', async () => {
    const answer = (await harness.invoke({ action: 'invalidate', client: 'bwell' }, 'bwell_admin')) as unknown as {
      client: string;
      dropped: number;
    };
    assert.equal(answer.client, 'bwell');
    for (const qualifier of ['bwell', 'basic_admin', undefined]) {
      await assert.rejects(
        harness.invoke({ action: 'invalidate', client: 'bwell' }, qualifier),
        (error: unknown) => error instanceof Error && error.name === 'access_denied',
      );
    }
    await assert.rejects(
      harness.invoke({ client: 'bwell' }, 'bwell_admin'),
      (error: unknown) => error instanceof Error && error.name === 'access_denied',
    );
    await assert.rejects(
      harness.invoke({ action: 'purge', client: 'bwell' }, 'bwell_admin'),
      (error: unknown) => error instanceof Error && error.name === 'invalid_request',
    );
  });

  it('emits EMF metrics for cache outcomes, token-endpoint calls, latency and errors by code', () => {
    const emf = harness.output
      .text()
      .split('\n')
      .filter((line) => line.includes('"_aws"'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    const names = new Set(
      emf.flatMap((record) =>
        ((record._aws as { CloudWatchMetrics: { Metrics: { Name: string }[] }[] }).CloudWatchMetrics ?? []).flatMap(
          (group) => group.Metrics.map((metric) => metric.Name),
        ),
      ),
    );
    for (const name of [
      'MemoryHits',
      'TableHits',
      'TokensFetched',
      'TokenEndpointCalls',
      'UpstreamLatency',
      'Errors',
    ]) {
      assert.ok(names.has(name), `metric ${name} emitted`);
    }
    assert.ok(emf.some((record) => record.ErrorCode === 'invalid_scope'));
  });

  it('logs each answer with the caller, client, scope, cache outcome and a correlation id', () => {
    const served = harness.output
      .text()
      .split('\n')
      .filter((line) => line.includes('"token served"'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    const viaHttp = served.find((line) => line.channel === 'http');
    assert.equal(viaHttp?.caller, callerArn);
    assert.equal(typeof viaHttp?.correlation_id, 'string');
    assert.ok(served.some((line) => line.cache === 'fetched' && typeof line.upstreamMs === 'number'));
    // Powertools leaves out empty strings: a client with no default scope asked for none.
    const odd = served.filter(
      (line) =>
        typeof line.client !== 'string' || (line.requestedScope !== undefined && typeof line.scope !== 'string'),
    );
    assert.deepEqual(odd, []);
  });

  it('authenticates private_key_jwt clients with a JWT real servers take: RS384, ES384, PS256 with x5t#S256', async () => {
    const thumbprint = createHash('sha256').update(Buffer.from(certificateDer(loadTestTls().cert), 'base64'));
    for (const [client, alg, x5t] of [
      ['smart-rsa', 'RS384', undefined],
      ['smart-ec', 'ES384', undefined],
      ['smart-pss', 'PS256', thumbprint.digest('base64url')],
    ] as const) {
      const answer = await fetchOk(client, 'system/*.read');
      assert.equal(answer.json.scope, 'system/*.read');
      const assertion = harness.oidc.lastClientAssertion();
      assert.equal(assertion?.header.alg, alg);
      assert.equal(assertion?.header.typ, 'JWT');
      assert.equal(typeof assertion?.header.kid, 'string');
      assert.equal(assertion?.header['x5t#S256'], x5t);
      const claims = assertion?.claims ?? {};
      assert.equal(claims.iss, `${client}-id`);
      assert.equal(claims.sub, `${client}-id`);
      assert.equal(claims.aud, harness.oidc.tokenEndpoint);
      assert.equal(typeof claims.jti, 'string');
      assert.ok((claims.exp as number) - (claims.iat as number) <= 300);
    }
  });

  it('signs client assertions with a KMS key (kms:Sign), holding no private key: PS256 and ES384', async () => {
    for (const [client, alg, keyArn] of [
      ['kms-rsa', 'PS256', harness.kmsKeys.rsa],
      ['kms-ec', 'ES384', harness.kmsKeys.ec],
    ] as const) {
      const signs = harness.kms.signCalls(keyArn);
      const answer = await fetchOk(client, 'system/*.read');
      assert.equal(answer.json.scope, 'system/*.read');
      assert.equal(harness.kms.signCalls(keyArn), signs + 1);
      const assertion = harness.oidc.lastClientAssertion();
      assert.equal(assertion?.header.alg, alg);
      assert.equal(assertion?.header.typ, 'JWT');
      const claims = assertion?.claims ?? {};
      assert.equal(claims.iss, `${client}-id`);
      assert.equal(claims.aud, harness.oidc.tokenEndpoint);
      assert.equal(typeof claims.jti, 'string');
      assert.ok((claims.exp as number) - (claims.iat as number) <= 300);
    }
    assert.equal(harness.oidc.lastClientAssertion()?.header.kid, 'ec-key-1');
  });

  it('answers 503 naming no key when KMS refuses to sign, or when the secret holds a private key as well', async () => {
    const denied = harness.kms.createKey('RSA_2048');
    harness.kms.deny(denied.arn);
    harness.secretsManager.putSecret('token-broker/kms-denied', JSON.stringify({ client_id: 'kms-denied-id' }));
    const kmsClient = {
      secretName: 'token-broker/kms-denied',
      scopes: ['system/*.read'],
      authMethod: 'private_key_jwt',
      signingKeyArn: denied.arn,
    };
    const refusal = await harness.withExtraClient('kms-denied', kmsClient, (http) =>
      refusedWith(http('kms-denied'), 503, 'unavailable'),
    );
    assert.match(refusal, /KMS signing key \(AccessDeniedException\)/);
    assert.doesNotMatch(refusal, /arn:aws:kms/);

    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    harness.secretsManager.putSecret(
      'token-broker/kms-denied',
      JSON.stringify({
        client_id: 'kms-denied-id',
        private_key_jwk: { ...privateKey.export({ format: 'jwk' }), kid: 'k' },
      }),
    );
    const doubled = await harness.withExtraClient('kms-denied', kmsClient, (http) =>
      refusedWith(http('kms-denied'), 503, 'unavailable'),
    );
    assert.match(doubled, /must hold only client_id: the client signs with its KMS key/);
  });

  it('refuses a private_key_jwt secret without a usable private key, naming the client only', async () => {
    harness.secretsManager.putSecret(
      'token-broker/smart-broken',
      JSON.stringify({ client_id: 'x', private_key_jwk: { kty: 'oct', k: 'c2VjcmV0' } }),
    );
    // The registry is fixed at cold start, so this goes through a fresh composition with one more client.
    const description = await harness.withExtraClient(
      'smart-broken',
      { secretName: 'token-broker/smart-broken', scopes: ['system/*.read'], authMethod: 'private_key_jwt' },
      (http) => refusedWith(http('smart-broken'), 503, 'unavailable'),
    );
    assert.match(description, /smart-broken/);
    assert.doesNotMatch(description, /c2VjcmV0/);
  });

  it('refuses a private key whose alg the broker does not sign with, or that does not fit the key', async () => {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    for (const alg of ['ES384', 'HS256', 'none']) {
      harness.secretsManager.putSecret(
        'token-broker/smart-odd-alg',
        JSON.stringify({ client_id: 'x', private_key_jwk: { ...privateKey.export({ format: 'jwk' }), kid: 'k', alg } }),
      );
      const description = await harness.withExtraClient(
        'smart-odd-alg',
        { secretName: 'token-broker/smart-odd-alg', scopes: ['system/*.read'], authMethod: 'private_key_jwt' },
        (http) => refusedWith(http('smart-odd-alg'), 503, 'unavailable'),
      );
      assert.match(description, /RS256, RS384, PS256, PS384, ES256 or ES384/);
    }
  });

  it('treats an API Gateway-shaped event that arrives through a client alias as a forged direct invocation', async () => {
    const forged = httpEvent('bwell', { body: '{"scope":"system/*.write"}' });
    for (const alias of ['basic', 'bwell', 'bwell_admin']) {
      await assert.rejects(
        harness.invoke(forged, alias),
        (error: unknown) => error instanceof Error && error.name === 'access_denied',
      );
    }
  });

  it('refuses an API Gateway event whose body is not a string with invalid_request', async () => {
    const event = { ...httpEvent('bwell'), body: 0 as unknown as string };
    const answer = (await harness.invoke(event, apiGatewayAliasName)) as { statusCode: number; body: string };
    assert.equal(answer.statusCode, 400);
    assert.equal(JSON.parse(answer.body).error, 'invalid_request');
  });
});
