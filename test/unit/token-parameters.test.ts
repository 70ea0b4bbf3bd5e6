import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TokenBroker } from '../../lambdas/core/broker.js';
import { type ClientRegistry, ConfigError, parseClientRegistry } from '../../lambdas/core/config.js';
import { BrokerError } from '../../lambdas/core/errors.js';
import { cacheKeyOf, resolveParameters } from '../../lambdas/core/token-parameters.js';
import {
  CountingMetrics,
  FakeClock,
  FixedSealingKey,
  FixedSecretSource,
  MapTokenCache,
  RecordingLogger,
  ScriptedTokenEndpoint,
} from '../support/fakes.js';

const base = {
  wellKnownUrl: 'https://issuer.example/.well-known/openid-configuration',
  secretName: 'token-broker/x',
  scopes: ['read', 'write'],
  defaultScope: 'read',
};

const clients: ClientRegistry = parseClientRegistry({
  auth0: { ...base, secretName: 'token-broker/auth0', audiences: ['https://api.example/', 'https://billing.example/'] },
  auth0default: {
    ...base,
    secretName: 'token-broker/auth0default',
    audiences: ['https://api.example/'],
    defaultAudience: 'https://api.example/',
  },
  rfc8707: {
    ...base,
    secretName: 'token-broker/rfc8707',
    resources: ['https://fhir.example/r4', 'https://fhir.example/dstu2'],
    defaultResource: 'https://fhir.example/r4',
  },
  entra: {
    ...base,
    secretName: 'token-broker/entra',
    scopes: ['api://fhir-app/.default'],
    defaultScope: 'api://fhir-app/.default',
  },
  plain: { ...base, secretName: 'token-broker/plain' },
});

function setup() {
  const clock = new FakeClock();
  const cache = new MapTokenCache();
  const endpoint = new ScriptedTokenEndpoint();
  const secrets = new FixedSecretSource({ clientId: 'id', clientSecret: 'secret' });
  const logger = new RecordingLogger();
  const broker = new TokenBroker({
    clients,
    secrets,
    sealingKeys: new FixedSealingKey(),
    cache,
    endpoint,
    clock,
    logger,
    metrics: new CountingMetrics(),
  });
  return { broker, cache, endpoint, logger, clock };
}

function isInvalidTarget(error: unknown): boolean {
  return error instanceof BrokerError && error.code === 'invalid_target' && error.status === 400;
}

describe('token request parameters', () => {
  it('sends the audience a caller names when the client lists it', async () => {
    const { broker, endpoint } = setup();
    await broker.getToken({ client: 'auth0', audience: 'https://billing.example/' });
    assert.equal(endpoint.requests[0]?.audience, 'https://billing.example/');
    assert.equal(endpoint.requests[0]?.resource, undefined);
  });

  it('sends no audience when the caller names none and the client has no default', async () => {
    const { broker, endpoint } = setup();
    await broker.getToken({ client: 'auth0' });
    assert.equal(endpoint.requests.length, 1);
    assert.ok(!('audience' in (endpoint.requests[0] ?? {})));
  });

  it("sends the client's default audience and resource when the caller names none", async () => {
    const { broker, endpoint } = setup();
    await broker.getToken({ client: 'auth0default' });
    await broker.getToken({ client: 'rfc8707' });
    assert.equal(endpoint.requests[0]?.audience, 'https://api.example/');
    assert.equal(endpoint.requests[1]?.resource, 'https://fhir.example/r4');
  });

  it('refuses an audience the client does not list, without calling the endpoint or echoing the value', async () => {
    const { broker, endpoint } = setup();
    await assert.rejects(broker.getToken({ client: 'auth0', audience: 'https://evil.example/' }), (error) => {
      assert.ok(isInvalidTarget(error));
      assert.doesNotMatch((error as Error).message, /evil/);
      return true;
    });
    await assert.rejects(broker.getToken({ client: 'rfc8707', resource: 'https://fhir.example/r5' }), isInvalidTarget);
    assert.equal(endpoint.calls, 0);
  });

  it('refuses any audience or resource for a client that lists none', async () => {
    const { broker, endpoint } = setup();
    await assert.rejects(broker.getToken({ client: 'plain', audience: 'https://api.example/' }), isInvalidTarget);
    await assert.rejects(broker.getToken({ client: 'plain', resource: 'https://fhir.example/r4' }), isInvalidTarget);
    await assert.rejects(broker.getToken({ client: 'auth0', resource: 'https://fhir.example/r4' }), isInvalidTarget);
    assert.equal(endpoint.calls, 0);
  });

  it('checks the scope before the parameters, so a bad scope says so', async () => {
    const { broker } = setup();
    await assert.rejects(
      broker.getToken({ client: 'auth0', scope: 'admin', audience: 'https://evil.example/' }),
      (error: unknown) => error instanceof BrokerError && error.code === 'invalid_scope',
    );
  });

  it('keeps one token per audience: a token for one audience is never served for another', async () => {
    const { broker, endpoint, cache } = setup();
    const api = await broker.getToken({ client: 'auth0', audience: 'https://api.example/' });
    const billing = await broker.getToken({ client: 'auth0', audience: 'https://billing.example/' });
    const none = await broker.getToken({ client: 'auth0' });
    assert.equal(endpoint.calls, 3);
    assert.notEqual(api.response.access_token, billing.response.access_token);
    assert.notEqual(none.response.access_token, api.response.access_token);
    const again = await broker.getToken({ client: 'auth0', audience: 'https://api.example/' });
    assert.equal(again.cache, 'memory');
    assert.equal(again.response.access_token, api.response.access_token);
    assert.equal(endpoint.calls, 3);
    assert.equal(cache.items.size, 3);
  });

  it('serves the default-audience token whether the caller names the default or nothing', async () => {
    const { broker, endpoint } = setup();
    const implicit = await broker.getToken({ client: 'auth0default' });
    const explicit = await broker.getToken({ client: 'auth0default', audience: 'https://api.example/' });
    assert.equal(endpoint.calls, 1);
    assert.equal(explicit.response.access_token, implicit.response.access_token);
  });

  it('treats an Entra .default scope as a scope: allowed by scopes, sent as scope', async () => {
    const { broker, endpoint } = setup();
    const result = await broker.getToken({ client: 'entra' });
    assert.equal(endpoint.requests[0]?.scope, 'api://fhir-app/.default');
    assert.equal(result.response.scope, 'api://fhir-app/.default');
    assert.ok(!('resource' in (endpoint.requests[0] ?? {})));
  });

  it('resolves parameters on their own terms', () => {
    const client = clients.rfc8707;
    assert.ok(client);
    assert.deepEqual(resolveParameters('rfc8707', client, {}), { resource: 'https://fhir.example/r4' });
    assert.deepEqual(resolveParameters('rfc8707', client, { resource: 'https://fhir.example/dstu2' }), {
      resource: 'https://fhir.example/dstu2',
    });
    assert.throws(() => resolveParameters('rfc8707', client, { audience: 'x' }), isInvalidTarget);
  });
});

describe('cacheKeyOf', () => {
  it('is unchanged for a request without parameters', () => {
    assert.equal(cacheKeyOf('bwell', ['system/*.read']), 'bwell#system/*.read');
    assert.equal(cacheKeyOf('bwell', ['system/*.read'], {}), 'bwell#system/*.read');
  });

  it('gives distinct keys to every combination of scope, audience and resource', () => {
    const keys = [
      cacheKeyOf('c', ['a']),
      cacheKeyOf('c', ['a'], { audience: 'x' }),
      cacheKeyOf('c', ['a'], { resource: 'https://x/' }),
      cacheKeyOf('c', ['a'], { audience: 'x', resource: 'https://x/' }),
      cacheKeyOf('c', ['a'], { audience: 'https://x/' }),
      cacheKeyOf('c', ['a', 'b']),
      cacheKeyOf('c', ['a'], { audience: 'b' }),
    ];
    assert.equal(new Set(keys).size, keys.length);
  });
});

describe('registry fields for parameters', () => {
  function problemsOf(client: Record<string, unknown>): string {
    try {
      parseClientRegistry({ x: { ...base, ...client } });
    } catch (error) {
      assert.ok(error instanceof ConfigError);
      return error.message;
    }
    assert.fail('expected a ConfigError');
  }

  it('keeps audiences, resources and their defaults', () => {
    const registry = parseClientRegistry({
      x: { ...base, audiences: ['urn:my-api'], defaultAudience: 'urn:my-api', resources: ['https://r.example/'] },
    });
    assert.deepEqual(registry.x?.audiences, ['urn:my-api']);
    assert.equal(registry.x?.defaultAudience, 'urn:my-api');
    assert.deepEqual(registry.x?.resources, ['https://r.example/']);
  });

  it('refuses empty lists, repeats, spaces and quotes, and a default outside the list', () => {
    assert.match(problemsOf({ audiences: [] }), /x\.audiences: must be a non-empty array/);
    assert.match(problemsOf({ audiences: ['a', 'a'] }), /x\.audiences: must not repeat/);
    assert.match(problemsOf({ audiences: ['a b'] }), /x\.audiences\[0\]: must be an audience/);
    assert.match(problemsOf({ audiences: ['a"b'] }), /x\.audiences\[0\]/);
    assert.match(problemsOf({ audiences: [42] }), /x\.audiences\[0\]/);
    assert.match(
      problemsOf({ audiences: ['a'], defaultAudience: 'b' }),
      /x\.defaultAudience: must be one of audiences/,
    );
    assert.match(problemsOf({ defaultAudience: 'a' }), /x\.defaultAudience: must be one of audiences/);
  });

  it('takes only absolute URIs without a fragment as resources (RFC 8707)', () => {
    assert.match(problemsOf({ resources: ['fhir'] }), /x\.resources\[0\]: must be an absolute URI/);
    assert.match(problemsOf({ resources: ['https://r.example/#frag'] }), /x\.resources\[0\]/);
    assert.match(
      problemsOf({ resources: ['https://r.example/'], defaultResource: 'https://other.example/' }),
      /x\.defaultResource/,
    );
    assert.doesNotThrow(() => parseClientRegistry({ x: { ...base, resources: ['urn:example:fhir'] } }));
  });
});
