import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ClientConfig } from '../../lambdas/core/config.js';
import { BrokerError } from '../../lambdas/core/errors.js';
import type { ClientCredentials } from '../../lambdas/core/ports.js';
import { type ExchangeTarget, TokenExchange } from '../../lambdas/core/token-exchange.js';
import {
  CountingMetrics,
  FakeClock,
  FixedSecretSource,
  RecordingLogger,
  ScriptedTokenEndpoint,
} from '../support/fakes.js';

const client: ClientConfig = {
  wellKnownUrl: 'https://issuer.example/.well-known/openid-configuration',
  secretName: 'token-broker/bwell',
  scopes: ['system/*.read', 'system/*.write'],
  audiences: ['https://api.example'],
};
const target: ExchangeTarget = {
  clientName: 'bwell',
  client,
  scopes: ['system/*.read'],
  parameters: { audience: 'https://api.example' },
};
const current: ClientCredentials = { clientId: 'id', clientSecret: 'current' };
const invalidClient = () =>
  new BrokerError('upstream_error', 'refused: invalid_client', { upstreamError: 'invalid_client' });

function setup() {
  const clock = new FakeClock();
  const endpoint = new ScriptedTokenEndpoint();
  const secrets = new FixedSecretSource(current);
  const metrics = new CountingMetrics();
  const logger = new RecordingLogger();
  const budgetTaken: string[] = [];
  const exchange = new TokenExchange({
    secrets,
    endpoint,
    issuance: {
      take: async (clientName) => {
        budgetTaken.push(clientName);
      },
    },
    clock,
    metrics,
    logger,
  });
  return { clock, endpoint, secrets, metrics, logger, budgetTaken, exchange, deadline: clock.now() + 5_000 };
}

/** A provider that takes only `accepted`; every other secret is invalid_client. */
function providerTaking(endpoint: ScriptedTokenEndpoint, accepted: string) {
  endpoint.answerWith(async (request, call) => {
    if (request.credentials.clientSecret !== accepted) throw invalidClient();
    return { accessToken: `token-${call}`, tokenType: 'Bearer', expiresIn: 300, scope: undefined };
  });
}

const secretsSent = (endpoint: ScriptedTokenEndpoint) =>
  endpoint.requests.map((request) => request.credentials.clientSecret);

describe('TokenExchange', () => {
  it('asks for the scopes and parameters by the deadline, and counts the lifetime from before the call', async () => {
    const { exchange, endpoint, clock, metrics, budgetTaken, deadline } = setup();
    const issuedAt = clock.now();
    endpoint.answerWith(async () => {
      await clock.sleep(250);
      return { accessToken: 'granted', tokenType: 'Bearer', expiresIn: 300, scope: 'system/*.read' };
    });
    const { token, credentials } = await exchange.fetch(target, current, deadline);
    assert.deepEqual(endpoint.requests, [
      {
        clientName: 'bwell',
        client,
        credentials: current,
        scope: 'system/*.read',
        audience: 'https://api.example',
        deadline,
      },
    ]);
    assert.deepEqual(token, {
      accessToken: 'granted',
      tokenType: 'Bearer',
      scope: 'system/*.read',
      issuedAt,
      expiresAt: issuedAt + 300_000,
    });
    assert.equal(credentials, current);
    assert.deepEqual(budgetTaken, ['bwell']);
    assert.equal(metrics.of('TokenEndpointCalls'), 1);
    assert.deepEqual(metrics.latencies, [250]);
  });

  it('claims the requested scope when the server omits it', async () => {
    const { exchange, endpoint, deadline } = setup();
    endpoint.answerWith(async () => ({ accessToken: 't', tokenType: 'Bearer', expiresIn: 60, scope: undefined }));
    assert.equal((await exchange.fetch(target, current, deadline)).token.scope, 'system/*.read');
  });

  it('refuses a token granted scopes outside the configuration, without repeating them', async () => {
    const { exchange, endpoint, metrics, logger, deadline } = setup();
    endpoint.answerWith(async () => ({
      accessToken: 't',
      tokenType: 'Bearer',
      expiresIn: 60,
      scope: 'system/*.read admin secret-scope',
    }));
    await assert.rejects(exchange.fetch(target, current, deadline), (error: unknown) => {
      assert.ok(error instanceof BrokerError);
      assert.equal(error.code, 'upstream_error');
      assert.match(error.message, /granted 2 scopes outside the client's configured scopes/);
      assert.doesNotMatch(error.message, /secret-scope/);
      return true;
    });
    assert.equal(metrics.of('TokenEndpointFailures'), 1);
    assert.deepEqual(logger.lines[0]?.attributes, { client: 'bwell', scopesOutside: 2 });
  });

  it('counts a failed call as a failure and still times it', async () => {
    const { exchange, endpoint, metrics, secrets, deadline } = setup();
    endpoint.answerWith(async () => {
      throw new BrokerError('upstream_error', 'the token endpoint of client bwell refused the request (HTTP 400)');
    });
    await assert.rejects(exchange.fetch(target, current, deadline), /HTTP 400/);
    assert.equal(metrics.of('TokenEndpointFailures'), 1);
    assert.equal(metrics.latencies.length, 1);
    assert.equal(secrets.refreshes, 0, 'only invalid_client re-reads the secret');
  });

  it('retries invalid_client once with the re-read secret, and seals under it', async () => {
    const { exchange, endpoint, secrets, metrics, budgetTaken, deadline } = setup();
    providerTaking(endpoint, 'rotated');
    secrets.getCredentials = async (_name, _client, options) =>
      options?.refresh ? { clientId: 'id', clientSecret: 'rotated' } : current;
    const { token, credentials } = await exchange.fetch(target, current, deadline);
    assert.equal(token.accessToken, 'token-2');
    assert.deepEqual(credentials, { clientId: 'id', clientSecret: 'rotated' });
    assert.deepEqual(secretsSent(endpoint), ['current', 'rotated']);
    assert.equal(metrics.of('SecretReloads'), 1);
    assert.deepEqual(budgetTaken, ['bwell', 'bwell'], 'each retry is a call of its own');
  });

  it("takes a rotation's pending secret, logs which stage without the secret, and seals under the current one", async () => {
    const { exchange, endpoint, secrets, metrics, logger, deadline } = setup();
    providerTaking(endpoint, 'pending-secret');
    secrets.rotation = [{ stage: 'pending', credentials: { clientId: 'id', clientSecret: 'pending-secret' } }];
    const { token, credentials } = await exchange.fetch(target, current, deadline);
    assert.equal(token.accessToken, 'token-2');
    assert.equal(credentials, current, 'the re-read (current) secret, which every container reads');
    assert.deepEqual(secretsSent(endpoint), ['current', 'pending-secret']);
    assert.equal(metrics.of('SecretFallbacks'), 1);
    const warning = logger.lines.find((line) => line.attributes.secretStage === 'pending');
    assert.match(warning?.message ?? '', /pending secret.*finish the rotation/);
    assert.doesNotMatch(JSON.stringify(logger.lines), /pending-secret/);
  });

  it('tries each live secret once, skipping repeats, and answers the first refusal when all are refused', async () => {
    const { exchange, endpoint, secrets, metrics, deadline } = setup();
    secrets.rotation = [
      { stage: 'pending', credentials: { clientId: 'id', clientSecret: 'pending' } },
      { stage: 'previous', credentials: current },
    ];
    const first = invalidClient();
    endpoint.answerWith(async (request) => {
      throw request.credentials.clientSecret === 'current' ? first : invalidClient();
    });
    await assert.rejects(exchange.fetch(target, current, deadline), (error: unknown) => error === first);
    assert.deepEqual(secretsSent(endpoint), ['current', 'pending']);
    assert.equal(metrics.of('SecretFallbacks'), 0);
  });

  it('tries no other secret once the deadline has passed', async () => {
    const { exchange, endpoint, secrets, clock, deadline } = setup();
    endpoint.answerWith(async () => {
      await clock.sleep(deadline - clock.now());
      throw invalidClient();
    });
    secrets.getCredentials = async (_name, _client, options) =>
      options?.refresh ? { clientId: 'id', clientSecret: 'rotated' } : current;
    secrets.rotation = [{ stage: 'previous', credentials: { clientId: 'id', clientSecret: 'old' } }];
    await assert.rejects(exchange.fetch(target, current, deadline), /invalid_client/);
    assert.equal(endpoint.calls, 1);
  });

  it('makes no call when the issuance budget refuses it', async () => {
    const { endpoint, secrets, clock, metrics, logger } = setup();
    const refusal = new BrokerError('unavailable', 'client bwell has made its 2 token requests this hour');
    const exchange = new TokenExchange({
      secrets,
      endpoint,
      issuance: {
        take: async () => {
          throw refusal;
        },
      },
      clock,
      metrics,
      logger,
    });
    await assert.rejects(exchange.fetch(target, current, clock.now() + 5_000), (error: unknown) => error === refusal);
    assert.equal(endpoint.calls, 0);
    assert.equal(metrics.of('TokenEndpointCalls'), 0);
  });
});
