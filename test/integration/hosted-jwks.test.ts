import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { KMSClient } from '@aws-sdk/client-kms';
import { KmsAssertionSigner, thumbprintOf } from '../../lambdas/adapters/kms-signer.js';
import { parseClientRegistry } from '../../lambdas/core/config.js';
import { type BrokerLogger, silentLogger } from '../../lambdas/core/ports.js';
import { createJwksHandler, type FunctionUrlEvent, jwksMaxAgeSeconds } from '../../lambdas/entry/jwks.js';
import { startBrokerHarness } from '../support/broker-harness.js';
import { assertNoLeak } from '../support/logs.js';

type Harness = Awaited<ReturnType<typeof startBrokerHarness>>;
let harness: Harness;

before(async () => {
  harness = await startBrokerHarness();
});
after(async () => {
  await harness?.close();
});

const get = (path: string, method = 'GET'): FunctionUrlEvent => ({
  rawPath: path,
  requestContext: { http: { method } },
});
const issuer = 'https://fhir.epic.example/.well-known/smart-configuration';
const epic = (extra: Record<string, unknown>) => ({
  wellKnownUrl: issuer,
  secretName: 'token-broker/epic',
  scopes: ['system/Patient.read'],
  authMethod: 'private_key_jwt',
  ...extra,
});
const staticJwk = {
  kty: 'EC',
  crv: 'P-256',
  kid: 'sm-key-2026',
  x: 'f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU',
  y: 'x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0',
};

function handlerFor(clients: Record<string, unknown>, logger: BrokerLogger = silentLogger) {
  return createJwksHandler({
    clients: parseClientRegistry(clients),
    signer: new KmsAssertionSigner(() => new KMSClient({})),
    logger,
  });
}

describe('the hosted JWKS handler', () => {
  it('publishes the signing key with its kid and alg, the next key by thumbprint, and the static keys', async () => {
    const rsa = harness.kms.createKey('RSA_2048');
    const next = harness.kms.createKey('ECC_NIST_P256');
    const handler = handlerFor({
      epic: epic({ signingKeyArn: rsa.arn, signingAlgorithm: 'PS256', jwksKeyArns: [next.arn], jwks: [staticJwk] }),
    });
    const result = await handler(get('/clients/epic/jwks.json'));
    assert.equal(result.statusCode, 200);
    assert.equal(result.headers['content-type'], 'application/json');
    assert.equal(result.headers['cache-control'], `public, max-age=${jwksMaxAgeSeconds}`);
    const { keys } = JSON.parse(result.body) as { keys: Record<string, string>[] };
    assert.deepEqual(keys, [
      { ...rsa.publicJwk, kid: thumbprintOf(rsa.publicJwk), alg: 'PS256', use: 'sig' },
      { ...next.publicJwk, kid: thumbprintOf(next.publicJwk), use: 'sig' },
      { use: 'sig', ...staticJwk },
    ]);
    for (const key of keys as Record<string, unknown>[]) {
      for (const member of ['d', 'p', 'q', 'dp', 'dq', 'qi']) assert.equal(key[member], undefined, member);
    }
  });

  it('reads each KMS public key once per container, however often the JWKS is fetched', async () => {
    const key = harness.kms.createKey('RSA_2048');
    const handler = handlerFor({ epic: epic({ signingKeyArn: key.arn }) });
    for (let i = 0; i < 5; i++) assert.equal((await handler(get('/clients/epic/jwks.json'))).statusCode, 200);
    assert.equal(harness.kms.publicKeyCalls(key.arn), 1);
  });

  it('lists a key named both as the signing key and in jwksKeyArns once, as the signing key', async () => {
    const key = harness.kms.createKey('RSA_2048');
    const handler = handlerFor({ epic: epic({ signingKeyArn: key.arn, jwksKeyArns: [key.arn], signingKeyId: 'k1' }) });
    const { keys } = JSON.parse((await handler(get('/clients/epic/jwks.json'))).body) as { keys: { kid: string }[] };
    assert.deepEqual(
      keys.map((jwk) => jwk.kid),
      ['k1'],
    );
  });

  it('answers the same 404 for an unknown client, a client with nothing to publish and any other path', async () => {
    const key = harness.kms.createKey('RSA_2048');
    const handler = handlerFor({
      epic: epic({ signingKeyArn: key.arn }),
      // A key in its secret and no static jwks: nothing to publish.
      smart: epic({ secretName: 'token-broker/smart' }),
      secretive: { wellKnownUrl: issuer, secretName: 'token-broker/secretive', scopes: ['a'] },
    });
    const answers = await Promise.all(
      [
        '/clients/nobody/jwks.json',
        '/clients/smart/jwks.json',
        '/clients/secretive/jwks.json',
        '/clients/epic/token',
        '/clients/epic/jwks.json/extra',
        '/clients/__proto__/jwks.json',
        '/clients/EPIC/jwks.json',
        '/',
      ].map((path) => handler(get(path))),
    );
    for (const result of answers) {
      assert.equal(result.statusCode, 404);
      assert.deepEqual(JSON.parse(result.body), {
        error: 'not_found',
        error_description: 'no JWKS is published at this path',
      });
    }
    assert.equal(harness.kms.publicKeyCalls(key.arn), 0);
  });

  it('refuses methods other than GET and HEAD with 405 and an Allow header; HEAD answers no body', async () => {
    const key = harness.kms.createKey('RSA_2048');
    const handler = handlerFor({ epic: epic({ signingKeyArn: key.arn }) });
    for (const method of ['POST', 'PUT', 'DELETE', 'OPTIONS']) {
      const result = await handler(get('/clients/epic/jwks.json', method));
      assert.equal(result.statusCode, 405, method);
      assert.equal(result.headers.allow, 'GET, HEAD');
      assert.equal(JSON.parse(result.body).error, 'invalid_request');
    }
    const head = await handler(get('/clients/epic/jwks.json', 'HEAD'));
    assert.equal(head.statusCode, 200);
    assert.equal(head.body, '');
  });

  it('answers 503, uncached and without detail, while KMS refuses; then serves once KMS answers again', async () => {
    const key = harness.kms.createKey('RSA_2048');
    harness.kms.deny(key.arn);
    const lines: string[] = [];
    const logger: BrokerLogger = {
      ...silentLogger,
      error: (message, attributes) => lines.push(JSON.stringify({ message, ...attributes })),
    };
    const handler = handlerFor({ epic: epic({ signingKeyArn: key.arn }) }, logger);
    const refused = await handler(get('/clients/epic/jwks.json'));
    assert.equal(refused.statusCode, 503);
    assert.equal(refused.headers['cache-control'], 'no-store');
    assert.equal(refused.headers['retry-after'], '5');
    assert.equal(JSON.parse(refused.body).error, 'temporarily_unavailable');
    assertNoLeak(refused.body, [key.arn]);
    assert.match(lines.join('\n'), /AccessDeniedException/);
    harness.kms.deny(key.arn, false);
    const served = await handler(get('/clients/epic/jwks.json'));
    assert.equal(served.statusCode, 200);
    assert.equal((JSON.parse(served.body) as { keys: unknown[] }).keys.length, 1);
  });
});

describe('a provider that registers the client by jwks_uri (oidc-provider over TLS)', () => {
  it('verifies the assertions signed with the current key from the hosted JWKS', async () => {
    const answer = await harness.http('kms-hosted');
    assert.equal(answer.statusCode, 200, answer.body);
    assert.equal(harness.oidc.lastClientAssertion()?.header.kid, thumbprintOfArn(harness, 'hostedCurrent'));
    assert.ok(harness.jwksServer.requests() >= 1, 'the provider fetched the JWKS');
  });

  it('rotation: after the switch to the published next key the provider accepts it with no change of its own', async () => {
    // Switch: the next key signs, the previous one stays published until it is retired.
    const switched = {
      secretName: 'token-broker/kms-hosted',
      authMethod: 'private_key_jwt',
      scopes: ['system/*.read'],
      signingKeyArn: harness.kmsKeys.hostedNext,
      jwksKeyArns: [harness.kmsKeys.hostedCurrent],
    };
    await harness.withExtraClient('kms-hosted', switched, async (http) => {
      const answer = await http('kms-hosted', { body: JSON.stringify({ forceRefresh: true }) });
      assert.equal(answer.statusCode, 200, answer.body);
      assert.equal(harness.oidc.lastClientAssertion()?.header.kid, thumbprintOfArn(harness, 'hostedNext'));
      assert.ok(harness.kms.signCalls(harness.kmsKeys.hostedNext) >= 1);
    });
  });

  it('retire: a key dropped from the registry leaves the JWKS, the signing key stays', async () => {
    const retired = handlerFor({
      'kms-hosted': epic({ signingKeyArn: harness.kmsKeys.hostedNext }),
    });
    const { keys } = JSON.parse((await retired(get('/clients/kms-hosted/jwks.json'))).body) as {
      keys: { kid: string }[];
    };
    assert.deepEqual(
      keys.map((jwk) => jwk.kid),
      [thumbprintOfArn(harness, 'hostedNext')],
    );
  });
});

function thumbprintOfArn(h: Harness, which: 'hostedCurrent' | 'hostedNext'): string {
  return thumbprintOf(h.kms.publicJwkOf(h.kmsKeys[which]));
}
