import assert from 'node:assert/strict';
import { hkdfSync, randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { TokenBroker } from '../../lambdas/core/broker.js';
import type { ClientRegistry } from '../../lambdas/core/config.js';
import { firstCooldownSeconds, maxBackoffSeconds, maxCooldownSeconds } from '../../lambdas/core/cooldown.js';
import { BrokerError } from '../../lambdas/core/errors.js';
import { forceRefreshIntervalSeconds, maxMinTtlSeconds } from '../../lambdas/core/freshness.js';
import { deriveSealingKey, seal, unseal } from '../../lambdas/core/sealing.js';
import {
  CountingMetrics,
  deferred,
  FakeClock,
  FixedSealingKey,
  FixedSecretSource,
  MapTokenCache,
  RecordingLogger,
  ScriptedTokenEndpoint,
} from '../support/fakes.js';

const clients: ClientRegistry = {
  bwell: {
    wellKnownUrl: 'https://issuer.example/.well-known/openid-configuration',
    secretName: 'token-broker/bwell',
    scopes: ['system/*.read', 'system/*.write'],
    defaultScope: 'system/*.read',
  },
  plain: {
    wellKnownUrl: 'https://issuer.example/.well-known/openid-configuration',
    secretName: 'token-broker/plain',
    scopes: ['a', 'b'],
  },
  budgeted: {
    wellKnownUrl: 'https://issuer.example/.well-known/openid-configuration',
    secretName: 'token-broker/budgeted',
    scopes: ['a', 'b'],
    maxTokenRequestsPerHour: 2,
  },
};

function setup(options: { refreshWindowSeconds?: number; refreshAheadFraction?: number } = {}) {
  const clock = new FakeClock();
  const cache = new MapTokenCache();
  const endpoint = new ScriptedTokenEndpoint();
  const secrets = new FixedSecretSource({ clientId: 'id', clientSecret: 'secret' });
  const logger = new RecordingLogger();
  const metrics = new CountingMetrics();
  const sealingKeys = new FixedSealingKey();
  const newBroker = () =>
    new TokenBroker({ clients, secrets, sealingKeys, cache, endpoint, clock, logger, metrics, ...options });
  return { clock, cache, endpoint, secrets, sealingKeys, logger, metrics, broker: newBroker(), newBroker };
}

async function rejectsWith(promise: Promise<unknown>, code: string) {
  await assert.rejects(promise, (error: unknown) => error instanceof BrokerError && error.code === code);
}

describe('TokenBroker', () => {
  it('fetches a token and answers with exactly the four fields callers get', async () => {
    const { broker, endpoint } = setup();
    const result = await broker.getToken({ client: 'bwell', scope: 'system/*.read' });
    assert.deepEqual(result.response, {
      access_token: 'token-1',
      token_type: 'Bearer',
      expires_in: 3600,
      scope: 'system/*.read',
    });
    assert.equal(result.cache, 'fetched');
    assert.equal(endpoint.calls, 1);
    assert.equal(endpoint.requests[0]?.credentials.clientSecret, 'secret');
  });

  it('serves repeated requests from memory without touching the table or the endpoint', async () => {
    const { broker, endpoint, cache } = setup();
    await broker.getToken({ client: 'bwell' });
    const gets = cache.gets;
    const second = await broker.getToken({ client: 'bwell' });
    assert.equal(second.cache, 'memory');
    assert.equal(endpoint.calls, 1);
    assert.equal(cache.gets, gets);
  });

  it('uses the client default scope when none is asked for', async () => {
    const { broker, endpoint } = setup();
    const result = await broker.getToken({ client: 'bwell' });
    assert.equal(endpoint.requests[0]?.scope, 'system/*.read');
    assert.equal(result.response.scope, 'system/*.read');
  });

  it('requests every allowed scope for a client without a default scope when none is asked for', async () => {
    const { broker, endpoint, cache } = setup();
    const result = await broker.getToken({ client: 'plain' });
    assert.equal(endpoint.requests[0]?.scope, 'a b');
    assert.equal(result.response.scope, 'a b');
    assert.deepEqual([...cache.items.keys()], ['plain#a b']);
  });

  it('shares one token between scope strings naming the same set', async () => {
    const { broker, endpoint, cache } = setup();
    await broker.getToken({ client: 'bwell', scope: 'system/*.write system/*.read system/*.read' });
    const second = await broker.getToken({ client: 'bwell', scope: '  system/*.read   system/*.write' });
    assert.equal(endpoint.calls, 1);
    assert.equal(second.cache, 'memory');
    assert.equal(endpoint.requests[0]?.scope, 'system/*.read system/*.write');
    assert.deepEqual([...cache.items.keys()], ['bwell#system/*.read system/*.write']);
  });

  it('refuses an unknown client, including names inherited from Object.prototype', async () => {
    const { broker, endpoint } = setup();
    await rejectsWith(broker.getToken({ client: 'nobody' }), 'unknown_client');
    await rejectsWith(broker.getToken({ client: '__proto__' }), 'unknown_client');
    await rejectsWith(broker.getToken({ client: 'constructor' }), 'unknown_client');
    assert.equal(endpoint.calls, 0);
  });

  it('refuses scopes the client is not allowed, malformed scopes and an empty scope', async () => {
    const { broker, endpoint } = setup();
    await rejectsWith(broker.getToken({ client: 'bwell', scope: 'system/*.read admin' }), 'invalid_scope');
    await rejectsWith(broker.getToken({ client: 'bwell', scope: 'system/*.read\u0000' }), 'invalid_scope');
    await rejectsWith(broker.getToken({ client: 'bwell', scope: 'system/*.réad' }), 'invalid_scope');
    await rejectsWith(broker.getToken({ client: 'bwell', scope: 'x'.repeat(10_000) }), 'invalid_scope');
    await rejectsWith(broker.getToken({ client: 'bwell', scope: '   ' }), 'invalid_scope');
    assert.equal(endpoint.calls, 0);
  });

  it('names only the first few refused scopes in an invalid_scope error', async () => {
    const { broker } = setup();
    // Eleven scopes of 90 characters: within the 1024-character limit on a request, far over what an error repeats.
    const refused = Array.from({ length: 11 }, (_, i) => `refused-${String(i).padStart(2, '0')}-${'x'.repeat(79)}`);
    await assert.rejects(broker.getToken({ client: 'bwell', scope: refused.join(' ') }), (error: unknown) => {
      assert.ok(error instanceof BrokerError && error.code === 'invalid_scope');
      assert.match(error.message, /^client bwell is not allowed scope refused-00-x+/);
      assert.match(error.message, /\(and 8 more\)$/);
      assert.ok(error.message.length <= 300, `${error.message.length} characters`);
      assert.ok(!error.message.includes('refused-03'));
      return true;
    });
  });

  it('reports the true remaining lifetime in whole seconds', async () => {
    const { broker, clock } = setup();
    await broker.getToken({ client: 'bwell' });
    clock.advance(1_500);
    const later = await broker.getToken({ client: 'bwell' });
    assert.equal(later.response.expires_in, 3598);
  });

  it('keeps serving while more than the refresh window remains, with refresh ahead switched off', async () => {
    const { broker, clock, endpoint } = setup({ refreshAheadFraction: 0 });
    await broker.getToken({ client: 'bwell' });
    clock.advance((3600 - 60) * 1000);
    const result = await broker.getToken({ client: 'bwell' });
    assert.equal(result.cache, 'memory');
    assert.equal(result.response.expires_in, 60);
    assert.equal(endpoint.calls, 1);
  });

  it('refreshes when inside the window', async () => {
    const { broker, clock, endpoint } = setup();
    await broker.getToken({ client: 'bwell' });
    clock.advance((3600 - 60) * 1000 + 1);
    const result = await broker.getToken({ client: 'bwell' });
    assert.equal(result.cache, 'fetched');
    assert.equal(result.response.access_token, 'token-2');
    assert.equal(result.response.expires_in, 3600);
    assert.equal(endpoint.calls, 2);
  });

  it('honours a configured refresh window', async () => {
    const { broker, clock, endpoint } = setup({ refreshWindowSeconds: 300 });
    await broker.getToken({ client: 'bwell' });
    clock.advance((3600 - 300) * 1000 + 1);
    await broker.getToken({ client: 'bwell' });
    assert.equal(endpoint.calls, 2);
  });

  it('reads a token another container stored, without calling the endpoint', async () => {
    const first = setup();
    await first.broker.getToken({ client: 'bwell' });
    const freshContainer = first.newBroker();
    first.clock.advance(10_000);
    const result = await freshContainer.getToken({ client: 'bwell' });
    assert.equal(result.cache, 'table');
    assert.equal(result.response.access_token, 'token-1');
    assert.equal(result.response.expires_in, 3590);
    assert.equal(first.endpoint.calls, 1);
  });

  it('ignores a stored token that has expired but is not yet deleted by TTL', async () => {
    const { broker, newBroker, clock, endpoint } = setup();
    await broker.getToken({ client: 'bwell' });
    clock.advance(3_600_000 + 5_000);
    const result = await newBroker().getToken({ client: 'bwell' });
    assert.equal(result.cache, 'fetched');
    assert.equal(endpoint.calls, 2);
  });

  it('stores the token sealed, with its expiry as issue time plus expires_in', async () => {
    const { broker, cache, clock } = setup();
    const issuedAt = clock.now();
    await broker.getToken({ client: 'bwell' });
    const stored = cache.items.get('bwell#system/*.read');
    assert.equal(stored?.expiresAt, issuedAt + 3_600_000);
    assert.equal(stored?.format, 2);
    assert.equal(Buffer.from(stored?.sealed ?? []).includes(Buffer.from('token-1')), false);
  });

  it('seals the stored token under the sealing key: the client secret alone does not open it', async () => {
    const { broker, cache, sealingKeys } = setup();
    await broker.getToken({ client: 'bwell' });
    const sealed = cache.items.get('bwell#system/*.read')?.sealed ?? new Uint8Array();
    const cacheKey = 'bwell#system/*.read';
    // Format 1's derivation, from the secret alone: what a copy of the table let a thief test guesses against.
    const fromSecretAlone = Buffer.from(
      hkdfSync(
        'sha256',
        Buffer.from('secret'),
        Buffer.from('token-broker'),
        Buffer.from('token-broker/token-seal/v1'),
        32,
      ),
    );
    assert.equal(unseal(fromSecretAlone, cacheKey, sealed), undefined);
    assert.equal(unseal(deriveSealingKey(randomBytes(32), cacheKey, 'secret'), cacheKey, sealed), undefined);
    assert.equal(
      unseal(deriveSealingKey(sealingKeys.key, cacheKey, 'secret'), cacheKey, sealed)?.accessToken,
      'token-1',
    );
  });

  it('reads the sealing key beside the secret and the table, and a token under a rotated sealing key as a miss', async () => {
    const { broker, newBroker, sealingKeys, endpoint } = setup();
    await broker.getToken({ client: 'bwell' });
    assert.equal(sealingKeys.reads, 1);
    sealingKeys.key = randomBytes(32);
    const result = await newBroker().getToken({ client: 'bwell' });
    assert.equal(result.cache, 'fetched');
    assert.equal(endpoint.calls, 2);
  });

  it('reads a format-1 item (sealed under the client secret alone) as a miss', async () => {
    const { cache, newBroker, endpoint, clock } = setup();
    const cacheKey = 'bwell#system/*.read';
    const v1Key = Buffer.from(
      hkdfSync(
        'sha256',
        Buffer.from('secret'),
        Buffer.from('token-broker'),
        Buffer.from('token-broker/token-seal/v1'),
        32,
      ),
    );
    const token = {
      accessToken: 'old',
      tokenType: 'Bearer',
      scope: 'system/*.read',
      issuedAt: clock.now(),
      expiresAt: clock.now() + 3_600_000,
    };
    cache.items.set(cacheKey, { format: 1, sealed: seal(v1Key, cacheKey, token), expiresAt: token.expiresAt });
    const result = await newBroker().getToken({ client: 'bwell' });
    assert.equal(result.cache, 'fetched');
    assert.equal(endpoint.calls, 1);
  });

  it('answers 503 when the sealing key cannot be read and nothing is cached, and serves memory when it is', async () => {
    const { broker, sealingKeys, clock, endpoint } = setup();
    sealingKeys.failing = true;
    await rejectsWith(broker.getToken({ client: 'bwell' }), 'unavailable');
    assert.equal(endpoint.calls, 0);
    sealingKeys.failing = false;
    await broker.getToken({ client: 'bwell' });
    sealingKeys.failing = true;
    clock.advance(3_600_000 - 200_000);
    assert.equal((await broker.getToken({ client: 'bwell' })).cache, 'stale-served');
  });

  it('reads a stored token sealed under a rotated-away secret as a miss', async () => {
    const { broker, newBroker, secrets, endpoint } = setup();
    await broker.getToken({ client: 'bwell' });
    secrets.credentials = { clientId: 'id', clientSecret: 'rotated' };
    const result = await newBroker().getToken({ client: 'bwell' });
    assert.equal(result.cache, 'fetched');
    assert.equal(endpoint.calls, 2);
  });

  it('makes one upstream call for concurrent requests of the same key', async () => {
    const { broker, endpoint } = setup();
    const gate = deferred<void>();
    endpoint.answerWith(async () => {
      await gate.promise;
      return { accessToken: 'shared', tokenType: 'Bearer', expiresIn: 3600, scope: 'system/*.read' };
    });
    const requests = Array.from({ length: 50 }, () => broker.getToken({ client: 'bwell' }));
    gate.resolve();
    const results = await Promise.all(requests);
    assert.equal(endpoint.calls, 1);
    assert.ok(results.every((result) => result.response.access_token === 'shared'));
  });

  it('makes separate calls for different keys', async () => {
    const { broker, endpoint } = setup();
    await Promise.all([
      broker.getToken({ client: 'bwell', scope: 'system/*.read' }),
      broker.getToken({ client: 'bwell', scope: 'system/*.write' }),
      broker.getToken({ client: 'plain' }),
    ]);
    assert.equal(endpoint.calls, 3);
  });

  it('shares a failure among concurrent callers and never caches it', async () => {
    const { broker, endpoint } = setup();
    endpoint.answerWith(async () => {
      throw new BrokerError('upstream_error', 'the token endpoint of client bwell refused the request');
    });
    const attempts = Array.from({ length: 5 }, () => broker.getToken({ client: 'bwell' }));
    for (const attempt of attempts) await rejectsWith(attempt, 'upstream_error');
    assert.equal(endpoint.calls, 1);

    endpoint.answerWith(async () => ({
      accessToken: 'recovered',
      tokenType: 'Bearer',
      expiresIn: 3600,
      scope: undefined,
    }));
    const result = await broker.getToken({ client: 'bwell' });
    assert.equal(result.response.access_token, 'recovered');
    assert.equal(endpoint.calls, 2);
  });

  it('claims the scope the server granted, and the requested one when the server omits it', async () => {
    const { broker, endpoint } = setup();
    endpoint.answerWith(async () => ({
      accessToken: 't',
      tokenType: 'Bearer',
      expiresIn: 3600,
      scope: 'system/*.read',
    }));
    const narrowed = await broker.getToken({ client: 'bwell', scope: 'system/*.read system/*.write' });
    assert.equal(narrowed.response.scope, 'system/*.read');

    endpoint.answerWith(async () => ({ accessToken: 't', tokenType: 'Bearer', expiresIn: 3600, scope: undefined }));
    const omitted = await broker.getToken({ client: 'bwell', scope: 'system/*.write' });
    assert.equal(omitted.response.scope, 'system/*.write');
  });

  it('refuses a token granted a scope outside the client configuration: 502, never cached or served', async () => {
    const { broker, endpoint, cache, logger } = setup();
    const outside = 'system/*.admin';
    endpoint.answerWith(async (_request, call) => ({
      accessToken: `overreaching-${call}`,
      tokenType: 'Bearer',
      expiresIn: 3600,
      scope: `system/*.read ${outside}`,
    }));
    await assert.rejects(broker.getToken({ client: 'bwell' }), (error: unknown) => {
      assert.ok(error instanceof BrokerError && error.code === 'upstream_error' && error.status === 502);
      assert.match(error.message, /client bwell granted 1 scope outside/);
      assert.ok(!error.message.includes(outside), 'the granted scope is not echoed');
      return true;
    });
    assert.equal(endpoint.calls, 1);
    assert.equal(cache.items.size, 0, 'nothing in the table');
    assert.equal(cache.puts, 0);
    assert.ok(logger.lines.every((line) => !JSON.stringify(line).includes(outside)));
    assert.ok(logger.lines.every((line) => !JSON.stringify(line).includes('overreaching')));
    // Nothing in memory either: the next request calls again.
    await rejectsWith(broker.getToken({ client: 'bwell' }), 'upstream_error');
    assert.equal(endpoint.calls, 2);
  });

  it('keeps serving the current token when its renewal is granted a scope outside the configuration', async () => {
    const { broker, clock, endpoint } = setup();
    await broker.getToken({ client: 'bwell' });
    clock.advance(3301_000);
    endpoint.answerWith(async () => ({
      accessToken: 'overreaching',
      tokenType: 'Bearer',
      expiresIn: 3600,
      scope: 'system/*.read other',
    }));
    const stale = await broker.getToken({ client: 'bwell' });
    assert.equal(stale.cache, 'stale-served');
    assert.equal(stale.response.access_token, 'token-1');
  });

  it('serves a token shorter-lived than the window from memory, scaling the window to a quarter of its life', async () => {
    const { broker, clock, endpoint } = setup();
    endpoint.answerWith(async (_request, call) => ({
      accessToken: `short-${call}`,
      tokenType: 'Bearer',
      expiresIn: 30,
      scope: undefined,
    }));
    const first = await broker.getToken({ client: 'bwell' });
    assert.equal(first.response.expires_in, 30);
    for (let second = 1; second <= 19; second++) {
      clock.advance(1_000);
      const later = await broker.getToken({ client: 'bwell' });
      assert.equal(later.cache, 'memory');
      assert.equal(later.response.access_token, 'short-1');
      assert.equal(later.response.expires_in, 30 - second, 'the true remaining lifetime');
    }
    assert.equal(endpoint.calls, 1);
    // Served down to 30 s / 4 = 7.5 s left; renewed a tenth of the lifetime before that, at 10.5 s left, so
    // that a renewal that fails still leaves the current token to serve.
    clock.advance(1_000);
    const renewed = await broker.getToken({ client: 'bwell' });
    assert.equal(renewed.cache, 'refreshed');
    assert.equal(renewed.response.access_token, 'short-2');
    assert.equal(renewed.response.expires_in, 30);
    assert.equal(endpoint.calls, 2);
  });

  it('serves a short-lived token another container stored from the table', async () => {
    const { broker, newBroker, clock, endpoint } = setup();
    endpoint.answerWith(async () => ({ accessToken: 'short', tokenType: 'Bearer', expiresIn: 45, scope: undefined }));
    await broker.getToken({ client: 'bwell' });
    clock.advance(10_000);
    const elsewhere = await newBroker().getToken({ client: 'bwell' });
    assert.equal(elsewhere.cache, 'table');
    assert.equal(elsewhere.response.expires_in, 35);
    assert.equal(endpoint.calls, 1);
  });

  it('keeps serving through the endpoint when the shared cache fails, and logs it', async () => {
    const { broker, endpoint, cache, logger } = setup();
    cache.failing = true;
    const result = await broker.getToken({ client: 'bwell' });
    assert.equal(result.cache, 'fetched');
    const again = await broker.getToken({ client: 'bwell' });
    assert.equal(again.cache, 'memory');
    assert.equal(endpoint.calls, 1);
    assert.ok(logger.lines.every((line) => line.level === 'warn' && /token table/.test(line.message)));
    assert.ok(logger.lines.length >= 2);
  });

  it('keeps serving from memory when the revocation check cannot read the table, and logs and counts it', async () => {
    const { broker, clock, cache, endpoint, logger, metrics } = setup();
    await broker.getToken({ client: 'bwell' });
    assert.equal(cache.revocationReads, 1, 'the first look, beside the first table read');
    clock.advance(31_000);
    cache.failing = true;
    const errors = metrics.of('SharedCacheErrors');
    assert.equal((await broker.getToken({ client: 'bwell' })).cache, 'memory');
    assert.equal(cache.revocationReads, 2);
    assert.equal(metrics.of('SharedCacheErrors'), errors + 1);
    assert.ok(logger.lines.some((line) => line.level === 'warn' && /revocation check failed/.test(line.message)));
    // The next look comes an interval later, not on every request.
    assert.equal((await broker.getToken({ client: 'bwell' })).cache, 'memory');
    assert.equal(cache.revocationReads, 2);
    assert.equal(endpoint.calls, 1);
  });

  it('rejects a refresh window that is not a whole number of seconds', () => {
    assert.throws(() => setup({ refreshWindowSeconds: -1 }), RangeError);
    assert.throws(() => setup({ refreshWindowSeconds: 1.5 }), RangeError);
  });

  describe('shared cooldown', () => {
    const failWith = (options: { status?: number; upstreamError?: string; retryAfterMs?: number }) => async () => {
      throw new BrokerError('upstream_error', 'the token endpoint of client bwell refused the request', {
        ...(options.status === undefined ? {} : { upstreamStatus: options.status }),
        ...(options.upstreamError === undefined ? {} : { upstreamError: options.upstreamError }),
        ...(options.retryAfterMs === undefined ? {} : { upstreamRetryAfterMs: options.retryAfterMs }),
      });
    };

    it('stops every container calling after a 5xx, while warm ones keep serving their current token', async () => {
      const { newBroker, clock, endpoint, cache, metrics, logger } = setup();
      const [first, second] = [newBroker(), newBroker()];
      await first.getToken({ client: 'bwell' });
      await second.getToken({ client: 'bwell' });
      clock.advance(3301_000);
      endpoint.answerWith(failWith({ status: 503 }));
      assert.equal((await first.getToken({ client: 'bwell' })).cache, 'stale-served');
      assert.equal(endpoint.calls, 2);
      assert.deepEqual(cache.cooldowns.get('bwell'), {
        until: clock.now() + firstCooldownSeconds.provider_failing * 1000,
        reason: 'provider_failing',
        failures: 1,
      });
      const served = await second.getToken({ client: 'bwell' });
      assert.equal(served.cache, 'stale-served');
      assert.equal(served.response.access_token, 'token-1');
      assert.equal(endpoint.calls, 2, 'the other container did not call');
      assert.equal(metrics.of('Cooldowns'), 1);
      assert.equal(metrics.of('CooldownSkips'), 1);
      const warning = logger.lines.find((line) => line.message.startsWith('token endpoint failing'));
      assert.deepEqual(warning?.attributes, {
        client: 'bwell',
        reason: 'provider_failing',
        failures: 1,
        waitSeconds: 5,
      });
    });

    it("honours the provider's Retry-After across the fleet, and tells a caller with no token when to come back", async () => {
      const { newBroker, clock, endpoint } = setup();
      endpoint.answerWith(failWith({ status: 429, retryAfterMs: 120_000 }));
      await rejectsWith(newBroker().getToken({ client: 'bwell' }), 'upstream_error');
      assert.equal(endpoint.calls, 1);
      clock.advance(119_000);
      const cold = newBroker();
      await assert.rejects(cold.getToken({ client: 'bwell' }), (error: unknown) => {
        assert.ok(error instanceof BrokerError);
        assert.equal(error.code, 'unavailable');
        assert.equal(error.status, 503);
        assert.equal(error.retryAfterSeconds, 1);
        assert.match(error.message, /asked for fewer requests \(HTTP 429\)/);
        return true;
      });
      assert.equal(endpoint.calls, 1);
      clock.advance(1_000);
      endpoint.answerWith(async () => ({
        accessToken: 'back',
        tokenType: 'Bearer',
        expiresIn: 3600,
        scope: undefined,
      }));
      assert.equal((await cold.getToken({ client: 'bwell' })).response.access_token, 'back');
      assert.equal(endpoint.calls, 2);
    });

    it('doubles the pause for failures in a row, and starts over after a success', async () => {
      const { broker, clock, endpoint, cache } = setup();
      endpoint.answerWith(failWith({ status: 401, upstreamError: 'invalid_client' }));
      await rejectsWith(broker.getToken({ client: 'bwell' }), 'upstream_error');
      assert.equal(cache.cooldowns.get('bwell')?.reason, 'invalid_client');
      clock.advance(firstCooldownSeconds.invalid_client * 1000);
      await rejectsWith(broker.getToken({ client: 'bwell' }), 'upstream_error');
      assert.equal(cache.cooldowns.get('bwell')?.failures, 2);
      assert.equal(cache.cooldowns.get('bwell')?.until, clock.now() + 2 * firstCooldownSeconds.invalid_client * 1000);
      clock.advance(2 * firstCooldownSeconds.invalid_client * 1000 - 1);
      await rejectsWith(broker.getToken({ client: 'bwell' }), 'unavailable');
      assert.equal(endpoint.calls, 2);
      clock.advance(1);
      endpoint.answerWith(async () => ({
        accessToken: 'fixed',
        tokenType: 'Bearer',
        expiresIn: 3600,
        scope: undefined,
      }));
      assert.equal((await broker.getToken({ client: 'bwell' })).response.access_token, 'fixed');
      assert.equal(cache.cooldowns.has('bwell'), false);
      assert.equal(endpoint.calls, 3);
    });

    it("doubles a failing provider's pause only up to 30 s, so the fleet is back soon after the provider", async () => {
      const { broker, clock, cache, endpoint } = setup();
      endpoint.answerWith(failWith({ status: 503 }));
      const pauses: number[] = [];
      for (let i = 0; i < 6; i++) {
        await rejectsWith(broker.getToken({ client: 'bwell' }), 'upstream_error');
        const cooldown = cache.cooldowns.get('bwell');
        pauses.push(((cooldown?.until ?? 0) - clock.now()) / 1000);
        clock.advance((cooldown?.until ?? 0) - clock.now());
      }
      assert.deepEqual(pauses, [5, 10, 20, 30, 30, 30]);
      assert.equal(maxBackoffSeconds.provider_failing, 30);
    });

    it('caps a Retry-After at maxCooldownSeconds', async () => {
      const { broker, clock, cache, endpoint } = setup();
      endpoint.answerWith(failWith({ status: 503, retryAfterMs: 86_400_000 }));
      await rejectsWith(broker.getToken({ client: 'bwell' }), 'upstream_error');
      assert.equal(cache.cooldowns.get('bwell')?.until, clock.now() + maxCooldownSeconds * 1000);
    });

    it("starts no cooldown for a refusal of the request itself, and none for another client's", async () => {
      const { broker, endpoint, cache } = setup();
      endpoint.answerWith(failWith({ status: 400, upstreamError: 'invalid_scope' }));
      await rejectsWith(broker.getToken({ client: 'bwell' }), 'upstream_error');
      await rejectsWith(broker.getToken({ client: 'bwell' }), 'upstream_error');
      assert.equal(endpoint.calls, 2);
      assert.equal(cache.cooldowns.size, 0);
      endpoint.answerWith(failWith({ status: 500 }));
      await rejectsWith(broker.getToken({ client: 'bwell' }), 'upstream_error');
      endpoint.answerWith(async () => ({
        accessToken: 'other',
        tokenType: 'Bearer',
        expiresIn: 3600,
        scope: undefined,
      }));
      assert.equal((await broker.getToken({ client: 'plain' })).response.access_token, 'other');
    });

    it('fails a forced refresh during a cooldown rather than hand back the refused token', async () => {
      const { broker, clock, endpoint } = setup();
      await broker.getToken({ client: 'bwell' });
      clock.advance(60_000);
      endpoint.answerWith(failWith({ status: 502 }));
      await rejectsWith(broker.getToken({ client: 'bwell', forceRefresh: true }), 'upstream_error');
      await rejectsWith(broker.getToken({ client: 'bwell', forceRefresh: true }), 'unavailable');
      assert.equal(endpoint.calls, 2);
      assert.equal((await broker.getToken({ client: 'bwell' })).response.access_token, 'token-1');
    });
  });

  describe('issuance budget', () => {
    it('counts every call against the client budget across containers, and refuses the one past it', async () => {
      const { newBroker, clock, endpoint, metrics, logger, cache } = setup();
      const [first, second] = [newBroker(), newBroker()];
      await first.getToken({ client: 'budgeted', scope: 'a' });
      await second.getToken({ client: 'budgeted', scope: 'b' });
      assert.deepEqual(metrics.budgetUsage, [50, 100]);
      assert.ok(
        logger.lines.some((line) => line.message === 'client has made most of its token requests for this hour'),
      );
      clock.advance(60_000);
      await assert.rejects(first.getToken({ client: 'budgeted', scope: 'a b' }), (error: unknown) => {
        assert.ok(error instanceof BrokerError);
        assert.equal(error.code, 'unavailable');
        assert.equal(error.retryAfterSeconds, 3540);
        assert.match(
          error.message,
          /^client budgeted has made its 2 token requests this hour; the next may go out in 3540 s$/,
        );
        return true;
      });
      assert.equal(endpoint.calls, 2);
      assert.equal(metrics.of('IssuanceBudgetExhausted'), 1);
      assert.equal(cache.cooldowns.size, 0, 'a spent budget is not the provider failing');
      // Other clients have budgets of their own, and the next hour is a new one.
      await first.getToken({ client: 'plain' });
      clock.advance(3540_000);
      await second.getToken({ client: 'budgeted', scope: 'a b' });
      assert.equal(endpoint.calls, 4);
    });

    it('serves the current token when its renewal finds the budget spent', async () => {
      const { broker, clock, endpoint } = setup();
      await broker.getToken({ client: 'budgeted' });
      clock.advance(60_000);
      await broker.getToken({ client: 'budgeted', forceRefresh: true });
      clock.advance(3301_000);
      const served = await broker.getToken({ client: 'budgeted' });
      assert.equal(served.cache, 'stale-served');
      assert.equal(served.response.access_token, 'token-2');
      assert.equal(endpoint.calls, 2);
    });

    it('lets the call go when the table cannot count it', async () => {
      const { broker, endpoint, cache, metrics } = setup();
      cache.failing = true;
      await broker.getToken({ client: 'budgeted' });
      assert.equal(endpoint.calls, 1);
      assert.ok(metrics.of('SharedCacheErrors') > 0);
    });

    it('counts each retry with a rotated secret as a call of its own', async () => {
      const { broker, endpoint, secrets, cache } = setup();
      endpoint.answerWith(async (request, call) => {
        if (call === 1)
          throw new BrokerError('upstream_error', 'refused', { upstreamError: 'invalid_client', upstreamStatus: 401 });
        return { accessToken: `token-${call}`, tokenType: 'Bearer', expiresIn: 3600, scope: request.scope };
      });
      const reread = { clientId: 'id', clientSecret: 'rotated' };
      const original = secrets.getCredentials.bind(secrets);
      secrets.getCredentials = async (name, client, options) =>
        options?.refresh ? reread : original(name, client, options);
      await broker.getToken({ client: 'budgeted' });
      assert.equal(endpoint.calls, 2);
      assert.deepEqual([...cache.issuance.values()], [2]);
    });
  });

  describe('caller-driven recovery', () => {
    it('fetches a new token on forceRefresh and serves it to every later caller', async () => {
      const { broker, clock, endpoint, metrics, logger } = setup();
      await broker.getToken({ client: 'bwell' });
      clock.advance(60_000);
      const forced = await broker.getToken({ client: 'bwell', forceRefresh: true });
      assert.equal(forced.response.access_token, 'token-2');
      assert.equal(forced.cache, 'refreshed');
      assert.equal(endpoint.calls, 2);
      assert.equal(metrics.of('ForcedRefreshes'), 1);
      assert.ok(logger.lines.some((line) => line.message === 'token refresh forced by a caller'));
      const ordinary = await broker.getToken({ client: 'bwell' });
      assert.equal(ordinary.response.access_token, 'token-2');
      assert.equal(ordinary.cache, 'memory');
    });

    it('answers a second forceRefresh within the interval with the token the first one fetched', async () => {
      const { broker, clock, endpoint } = setup();
      await broker.getToken({ client: 'bwell' });
      clock.advance(60_000);
      await broker.getToken({ client: 'bwell', forceRefresh: true });
      clock.advance((forceRefreshIntervalSeconds - 1) * 1000);
      const again = await broker.getToken({ client: 'bwell', forceRefresh: true });
      assert.equal(again.response.access_token, 'token-2');
      assert.equal(endpoint.calls, 2);
      clock.advance(2_000);
      const later = await broker.getToken({ client: 'bwell', forceRefresh: true });
      assert.equal(later.response.access_token, 'token-3');
      assert.equal(endpoint.calls, 3);
    });

    it('makes one call for concurrent forced refreshes, and ordinary callers meanwhile get the current token', async () => {
      const { broker, clock, endpoint } = setup();
      await broker.getToken({ client: 'bwell' });
      clock.advance(60_000);
      const gate = deferred<void>();
      endpoint.answerWith(async (_request, call) => {
        await gate.promise;
        return { accessToken: `token-${call}`, tokenType: 'Bearer', expiresIn: 3600, scope: undefined };
      });
      const forced = Array.from({ length: 20 }, () => broker.getToken({ client: 'bwell', forceRefresh: true }));
      const ordinary = await broker.getToken({ client: 'bwell' });
      assert.equal(ordinary.response.access_token, 'token-1');
      gate.resolve();
      const results = await Promise.all(forced);
      assert.equal(endpoint.calls, 2);
      assert.ok(results.every((result) => result.response.access_token === 'token-2'));
    });

    it('shares one forced refresh across containers through the table', async () => {
      const { newBroker, clock, endpoint, metrics } = setup();
      const containers = Array.from({ length: 4 }, () => newBroker());
      for (const container of containers) await container.getToken({ client: 'bwell' });
      assert.equal(endpoint.calls, 1);
      clock.advance(60_000);
      const gate = deferred<void>();
      endpoint.answerWith(async (_request, call) => {
        await gate.promise;
        return { accessToken: `token-${call}`, tokenType: 'Bearer', expiresIn: 3600, scope: undefined };
      });
      const answers = Promise.all(
        containers.map((container) => container.getToken({ client: 'bwell', forceRefresh: true })),
      );
      await new Promise((resolve) => setImmediate(resolve));
      gate.resolve();
      const results = await answers;
      assert.equal(endpoint.calls, 2);
      assert.ok(results.every((result) => result.response.access_token === 'token-2'));
      assert.equal(metrics.of('ForcedRefreshes'), 1);
    });

    it('fails a forced refresh when the endpoint fails rather than serve the refused token', async () => {
      const { broker, clock, endpoint } = setup();
      await broker.getToken({ client: 'bwell' });
      clock.advance(60_000);
      endpoint.answerWith(async () => {
        throw new BrokerError('unavailable', 'the token endpoint of client bwell did not answer');
      });
      await rejectsWith(broker.getToken({ client: 'bwell', forceRefresh: true }), 'unavailable');
      const ordinary = await broker.getToken({ client: 'bwell' });
      assert.equal(ordinary.response.access_token, 'token-1');
      assert.equal(ordinary.cache, 'memory');
    });

    it('treats forceRefresh false as an ordinary request', async () => {
      const { broker, clock, endpoint } = setup();
      await broker.getToken({ client: 'bwell' });
      clock.advance(60_000);
      assert.equal((await broker.getToken({ client: 'bwell', forceRefresh: false })).cache, 'memory');
      assert.equal(endpoint.calls, 1);
    });

    it('fetches when the cached token has less than minTtl left, and serves it when it has more', async () => {
      const { broker, clock, endpoint } = setup();
      await broker.getToken({ client: 'bwell' });
      clock.advance(3000_000);
      const enough = await broker.getToken({ client: 'bwell', minTtl: 600 });
      assert.equal(enough.response.access_token, 'token-1');
      assert.equal(enough.response.expires_in, 600);
      const needy = await broker.getToken({ client: 'bwell', minTtl: 601 });
      assert.equal(needy.response.access_token, 'token-2');
      assert.equal(needy.cache, 'refreshed');
      assert.equal(endpoint.calls, 2);
    });

    it('caps minTtl at half the token lifetime, so asking more than the provider gives is not a call per request', async () => {
      const { broker, clock, endpoint } = setup();
      await broker.getToken({ client: 'bwell', minTtl: maxMinTtlSeconds });
      clock.advance(1000_000);
      assert.equal((await broker.getToken({ client: 'bwell', minTtl: maxMinTtlSeconds })).cache, 'memory');
      clock.advance(801_000);
      const renewed = await broker.getToken({ client: 'bwell', minTtl: maxMinTtlSeconds });
      assert.equal(renewed.response.access_token, 'token-2');
      assert.equal(endpoint.calls, 2);
    });

    it('reads a token another container stored when it meets minTtl, without calling', async () => {
      const { newBroker, clock, endpoint } = setup();
      const first = newBroker();
      const second = newBroker();
      await first.getToken({ client: 'bwell' });
      clock.advance(3000_000);
      await second.getToken({ client: 'bwell' });
      await first.getToken({ client: 'bwell', minTtl: 900 });
      assert.equal(endpoint.calls, 2);
      const fromTable = await second.getToken({ client: 'bwell', minTtl: 900 });
      assert.equal(fromTable.response.access_token, 'token-2');
      assert.equal(fromTable.cache, 'table');
      assert.equal(endpoint.calls, 2);
    });

    it('refuses a minTtl or forceRefresh of the wrong kind without calling', async () => {
      const { broker, endpoint } = setup();
      for (const minTtl of [-1, 1.5, maxMinTtlSeconds + 1, Number.NaN, '60'] as unknown as number[]) {
        await rejectsWith(broker.getToken({ client: 'bwell', minTtl }), 'invalid_request');
      }
      for (const forceRefresh of ['true', 1, null] as unknown as boolean[]) {
        await rejectsWith(broker.getToken({ client: 'bwell', forceRefresh }), 'invalid_request');
      }
      assert.equal(endpoint.calls, 0);
    });
  });

  describe('refresh ahead', () => {
    // 3600 s tokens: renewal is due when a fifth of the life, at most 300 s, remains: at 3300 s.
    it('keeps serving from memory before the refresh-ahead point', async () => {
      const { broker, clock, endpoint } = setup();
      await broker.getToken({ client: 'bwell' });
      clock.advance(3299_000);
      assert.equal((await broker.getToken({ client: 'bwell' })).cache, 'memory');
      assert.equal(endpoint.calls, 1);
    });

    it('renews a 300 s token 90 s before expiry, so a failed renewal leaves 30 s of serving', async () => {
      const { broker, clock, endpoint } = setup();
      endpoint.answerWith(async (_request, call) => ({
        accessToken: `token-${call}`,
        tokenType: 'Bearer',
        expiresIn: 300,
        scope: undefined,
      }));
      await broker.getToken({ client: 'bwell' });
      clock.advance(209_000);
      assert.equal((await broker.getToken({ client: 'bwell' })).cache, 'memory');
      clock.advance(1_001);
      endpoint.answerWith(async () => {
        throw new BrokerError('upstream_error', 'the token endpoint of client bwell refused the request', {
          upstreamStatus: 503,
        });
      });
      const stale = await broker.getToken({ client: 'bwell' });
      assert.equal(stale.cache, 'stale-served');
      assert.equal(stale.response.expires_in, 89);
      // Through the cooldown and past it, until 60 s are left: the current token.
      clock.advance(29_000);
      assert.equal((await broker.getToken({ client: 'bwell' })).response.access_token, 'token-1');
      assert.equal(endpoint.calls, 3, 'one more try after the 5 s pause, and one after the 10 s pause');
    });

    it('renews for one caller while the others are still served the current token', async () => {
      const { broker, clock, endpoint } = setup();
      await broker.getToken({ client: 'bwell' });
      clock.advance(3301_000);
      const gate = deferred<void>();
      endpoint.answerWith(async (_request, call) => {
        await gate.promise;
        return { accessToken: `token-${call}`, tokenType: 'Bearer', expiresIn: 3600, scope: undefined };
      });
      const renewing = broker.getToken({ client: 'bwell' });
      const others = await Promise.all(Array.from({ length: 10 }, () => broker.getToken({ client: 'bwell' })));
      assert.ok(others.every((other) => other.cache === 'memory' && other.response.access_token === 'token-1'));
      gate.resolve();
      const renewed = await renewing;
      assert.equal(renewed.cache, 'refreshed');
      assert.equal(renewed.response.access_token, 'token-2');
      assert.equal((await broker.getToken({ client: 'bwell' })).response.access_token, 'token-2');
      assert.equal(endpoint.calls, 2);
    });

    it('serves the current token when its renewal fails, and tries again once the cooldown lapses', async () => {
      const { broker, clock, endpoint, metrics } = setup();
      await broker.getToken({ client: 'bwell' });
      clock.advance(3301_000);
      endpoint.answerWith(async () => {
        throw new BrokerError('unavailable', 'the token endpoint of client bwell could not be reached', {
          upstreamUnreachable: true,
        });
      });
      const stale = await broker.getToken({ client: 'bwell' });
      assert.equal(stale.cache, 'stale-served');
      assert.equal(stale.response.access_token, 'token-1');
      assert.equal((await broker.getToken({ client: 'bwell' })).cache, 'stale-served');
      assert.equal(endpoint.calls, 2, 'not within the cooldown');
      clock.advance(firstCooldownSeconds.provider_failing * 1000);
      await broker.getToken({ client: 'bwell' });
      assert.equal(endpoint.calls, 3);
      assert.equal(metrics.of('StaleServed'), 3);
      assert.equal(metrics.of('CooldownSkips'), 1);
    });

    it('serves the current token when the secret cannot be read for its renewal', async () => {
      const { broker, clock, secrets } = setup();
      await broker.getToken({ client: 'bwell' });
      clock.advance(3301_000);
      secrets.failing = true;
      assert.equal((await broker.getToken({ client: 'bwell' })).cache, 'stale-served');
    });

    it('makes callers wait once the token is inside the minimum window, and fails them if renewal fails', async () => {
      const { broker, clock, endpoint } = setup();
      await broker.getToken({ client: 'bwell' });
      clock.advance(3541_000);
      endpoint.answerWith(async () => {
        throw new BrokerError('upstream_timeout', 'the token endpoint of client bwell did not answer in time');
      });
      await rejectsWith(broker.getToken({ client: 'bwell' }), 'upstream_timeout');
    });
  });

  describe('across containers', () => {
    it('lets one container call the token endpoint for a cold key while the others wait for its token', async () => {
      const { newBroker, endpoint, metrics } = setup();
      const gate = deferred<void>();
      endpoint.answerWith(async () => {
        await gate.promise;
        return { accessToken: 'only-one', tokenType: 'Bearer', expiresIn: 3600, scope: undefined };
      });
      const containers = Array.from({ length: 4 }, () => newBroker());
      const answers = Promise.all(containers.map((container) => container.getToken({ client: 'bwell' })));
      await new Promise((resolve) => setImmediate(resolve));
      gate.resolve();
      const results = await answers;
      assert.equal(endpoint.calls, 1);
      assert.ok(results.every((result) => result.response.access_token === 'only-one'));
      assert.deepEqual(results.map((result) => result.cache).sort(), ['fetched', 'table', 'table', 'table']);
      assert.equal(metrics.of('LeaseWaits'), 3);
    });

    it('finds the token a container stored just before releasing the lease, instead of calling again', async () => {
      const { broker, newBroker, cache, endpoint } = setup();
      // Another container's whole renewal lands between this one's table read and its lease.
      const acquire = cache.acquireLease.bind(cache);
      let raced = false;
      cache.acquireLease = async (key, holder, now, until) => {
        if (!raced) {
          raced = true;
          assert.equal((await newBroker().getToken({ client: 'bwell' })).cache, 'fetched');
        }
        return acquire(key, holder, now, until);
      };
      const result = await broker.getToken({ client: 'bwell' });
      assert.equal(result.cache, 'table');
      assert.equal(result.response.access_token, 'token-1');
      assert.equal(endpoint.calls, 1);
      assert.equal(cache.leases.size, 0, 'the lease was released');
    });

    it('takes over the lease of a container that died holding it', async () => {
      const { broker, cache, clock, endpoint } = setup();
      cache.leases.set('bwell#system/*.read', { holder: 'dead-container', until: clock.now() + 7_000 });
      const result = await broker.getToken({ client: 'bwell' });
      assert.equal(result.cache, 'fetched');
      assert.equal(endpoint.calls, 1);
      assert.ok(clock.now() >= Date.UTC(2026, 10, 29, 12, 0, 7));
    });

    it('keeps serving the current token while another container renews it', async () => {
      const { broker, cache, clock, endpoint } = setup();
      await broker.getToken({ client: 'bwell' });
      clock.advance(3301_000);
      cache.leases.set('bwell#system/*.read', { holder: 'other-container', until: clock.now() + 7_000 });
      const result = await broker.getToken({ client: 'bwell' });
      assert.equal(result.cache, 'memory');
      assert.equal(result.response.access_token, 'token-1');
      assert.equal(endpoint.calls, 1);
    });

    const key = 'bwell#system/*.read';
    const codesOf = (outcomes: PromiseSettledResult<unknown>[]) =>
      outcomes
        .map((outcome) =>
          outcome.status === 'fulfilled'
            ? 'served'
            : outcome.reason instanceof BrokerError
              ? outcome.reason.code
              : 'crash',
        )
        .sort();
    const refusalsOf = (outcomes: PromiseSettledResult<unknown>[]) =>
      outcomes.flatMap((outcome) =>
        outcome.status === 'rejected' && outcome.reason instanceof BrokerError && outcome.reason.code === 'unavailable'
          ? [outcome.reason.message]
          : [],
      );

    it('lets only the lease holder call a provider that fails fast; the waiting containers do not call it', async () => {
      const { newBroker, endpoint, cache } = setup();
      const containers = Array.from({ length: 10 }, () => newBroker());
      endpoint.answerWith(async () => {
        // Fails once every container has asked for the lease: the nine that lost it are waiting on it.
        while (cache.leaseAttempts < containers.length) await new Promise((resolve) => setImmediate(resolve));
        throw new BrokerError('upstream_error', 'the token endpoint of client bwell refused the request (HTTP 400)');
      });
      const outcomes = await Promise.allSettled(containers.map((container) => container.getToken({ client: 'bwell' })));
      assert.equal(endpoint.calls, 1);
      assert.deepEqual(codesOf(outcomes), ['unavailable', ...Array(8).fill('unavailable'), 'upstream_error'].sort());
      for (const message of refusalsOf(outcomes)) {
        assert.equal(message, 'another request for a token of client bwell just failed; retry in a moment');
      }
      assert.equal(cache.leases.size, 0, 'the holder released its lease');
    });

    it('lets only the lease holder call a provider slower than the lease, within a deadline before its lease ends', async () => {
      const { newBroker, endpoint, cache, clock } = setup();
      const leaseEnds: number[] = [];
      endpoint.answerWith(async (request) => {
        leaseEnds.push(cache.leases.get(key)?.until ?? Number.NaN);
        // This provider answers after 8 s; the adapter gives up at the deadline it is handed, if any.
        const answersAt = clock.now() + 8_000;
        const givesUpAt = request.deadline ?? Number.POSITIVE_INFINITY;
        await clock.sleep(Math.min(answersAt, givesUpAt) - clock.now());
        if (givesUpAt < answersAt) {
          throw new BrokerError('upstream_timeout', 'the token endpoint of client bwell did not answer in time');
        }
        return { accessToken: 'late', tokenType: 'Bearer', expiresIn: 3600, scope: undefined };
      });
      const started = clock.now();
      const containers = Array.from({ length: 10 }, () => newBroker());
      const outcomes = await Promise.allSettled(containers.map((container) => container.getToken({ client: 'bwell' })));
      assert.equal(endpoint.calls, 1);
      assert.deepEqual(codesOf(outcomes), [...Array(9).fill('unavailable'), 'upstream_timeout'].sort());
      const deadline = endpoint.requests[0]?.deadline ?? Number.NaN;
      assert.ok(deadline - started <= 5_000, 'the default upstream budget, counted from taking the lease');
      assert.ok(deadline < (leaseEnds[0] ?? Number.NaN), 'the deadline falls before the lease ends');
    });

    it('lets exactly one waiting container take over a lapsed lease; the others are served its token', async () => {
      const { newBroker, cache, clock, endpoint } = setup();
      cache.leases.set(key, { holder: 'dead-container', until: clock.now() + 7_000 });
      endpoint.answerWith(async (_request, call) => {
        await clock.sleep(1_000);
        return { accessToken: `token-${call}`, tokenType: 'Bearer', expiresIn: 3600, scope: undefined };
      });
      const containers = Array.from({ length: 5 }, () => newBroker());
      const results = await Promise.all(containers.map((container) => container.getToken({ client: 'bwell' })));
      assert.equal(endpoint.calls, 1);
      assert.ok(results.every((result) => result.response.access_token === 'token-1'));
      assert.deepEqual(results.map((result) => result.cache).sort(), ['fetched', 'table', 'table', 'table', 'table']);
    });

    it('never calls after losing a takeover: the losers wait on the new holder and answer its failure', async () => {
      const { newBroker, cache, clock, endpoint } = setup();
      cache.leases.set(key, { holder: 'dead-container', until: clock.now() + 7_000 });
      endpoint.answerWith(async (request) => {
        await clock.sleep((request.deadline ?? clock.now() + 8_000) - clock.now());
        throw new BrokerError('upstream_timeout', 'the token endpoint of client bwell did not answer in time');
      });
      const containers = Array.from({ length: 5 }, () => newBroker());
      const outcomes = await Promise.allSettled(containers.map((container) => container.getToken({ client: 'bwell' })));
      assert.equal(endpoint.calls, 1);
      assert.deepEqual(codesOf(outcomes), [...Array(4).fill('unavailable'), 'upstream_timeout'].sort());
    });

    it('does not retry invalid_client with a re-read secret once the deadline has passed', async () => {
      const { broker, endpoint, secrets, clock } = setup();
      endpoint.answerWith(async (request) => {
        await clock.sleep((request.deadline ?? clock.now() + 6_000) - clock.now());
        throw new BrokerError('upstream_error', 'refused: invalid_client', { upstreamError: 'invalid_client' });
      });
      secrets.getCredentials = async (_name, _client, options) =>
        options?.refresh ? { clientId: 'id', clientSecret: 'rotated' } : { clientId: 'id', clientSecret: 'old' };
      await rejectsWith(broker.getToken({ client: 'bwell' }), 'upstream_error');
      assert.equal(endpoint.calls, 1);
    });

    it('goes ahead alone when the table cannot hold a lease', async () => {
      const { broker, cache, endpoint, metrics } = setup();
      cache.failing = true;
      assert.equal((await broker.getToken({ client: 'bwell' })).cache, 'fetched');
      assert.equal(endpoint.calls, 1);
      assert.ok(metrics.of('SharedCacheErrors') >= 3);
    });
  });

  describe('secret rotation', () => {
    it('re-reads the secret once and retries when the token endpoint answers invalid_client', async () => {
      const { broker, endpoint, secrets, metrics } = setup();
      endpoint.answerWith(async (request, call) => {
        if (request.credentials.clientSecret !== 'rotated') {
          throw new BrokerError('upstream_error', 'refused: invalid_client', { upstreamError: 'invalid_client' });
        }
        return { accessToken: `token-${call}`, tokenType: 'Bearer', expiresIn: 3600, scope: undefined };
      });
      secrets.getCredentials = async (_name, _client, options) => {
        secrets.reads++;
        return options?.refresh ? { clientId: 'id', clientSecret: 'rotated' } : { clientId: 'id', clientSecret: 'old' };
      };
      const result = await broker.getToken({ client: 'bwell' });
      assert.equal(result.response.access_token, 'token-2');
      assert.equal(endpoint.calls, 2);
      assert.equal(metrics.of('SecretReloads'), 1);
    });

    it('does not retry invalid_client when the re-read secret is unchanged', async () => {
      const { broker, endpoint, secrets } = setup();
      endpoint.answerWith(async () => {
        throw new BrokerError('upstream_error', 'refused: invalid_client', { upstreamError: 'invalid_client' });
      });
      await rejectsWith(broker.getToken({ client: 'bwell' }), 'upstream_error');
      assert.equal(endpoint.calls, 1);
      assert.equal(secrets.refreshes, 1);
    });

    /** A provider that takes only `accepted`; every other secret is invalid_client. */
    function providerTaking(endpoint: ScriptedTokenEndpoint, accepted: string) {
      endpoint.answerWith(async (request, call) => {
        if (request.credentials.clientSecret !== accepted) {
          throw new BrokerError('upstream_error', 'refused: invalid_client', { upstreamError: 'invalid_client' });
        }
        return { accessToken: `token-${call}`, tokenType: 'Bearer', expiresIn: 3600, scope: undefined };
      });
    }

    it("takes the rotation's pending secret when the provider has it before Secrets Manager made it current", async () => {
      const { broker, endpoint, secrets, metrics, logger } = setup();
      providerTaking(endpoint, 'new');
      secrets.rotation = [{ stage: 'pending', credentials: { clientId: 'id', clientSecret: 'new' } }];
      const result = await broker.getToken({ client: 'bwell' });
      assert.equal(result.response.access_token, 'token-2');
      assert.deepEqual(
        endpoint.requests.map((request) => request.credentials.clientSecret),
        ['secret', 'new'],
      );
      assert.equal(metrics.of('SecretFallbacks'), 1);
      const warning = logger.lines.find((line) => line.attributes.secretStage === 'pending');
      assert.match(warning?.message ?? '', /pending secret.*finish the rotation/);
      assert.doesNotMatch(JSON.stringify(logger.lines), /"new"/);
    });

    it('takes the previous secret when Secrets Manager rotated before the provider did', async () => {
      const { broker, endpoint, secrets, metrics } = setup();
      providerTaking(endpoint, 'old');
      secrets.rotation = [{ stage: 'previous', credentials: { clientId: 'id', clientSecret: 'old' } }];
      assert.equal((await broker.getToken({ client: 'bwell' })).response.access_token, 'token-2');
      assert.equal(metrics.of('SecretFallbacks'), 1);
    });

    it('seals a token the previous secret got under the current one, so other containers read it', async () => {
      const { broker, endpoint, secrets, newBroker } = setup();
      providerTaking(endpoint, 'old');
      secrets.rotation = [{ stage: 'previous', credentials: { clientId: 'id', clientSecret: 'old' } }];
      const first = await broker.getToken({ client: 'bwell' });
      const other = await newBroker().getToken({ client: 'bwell' });
      assert.equal(other.cache, 'table');
      assert.equal(other.response.access_token, first.response.access_token);
      assert.equal(endpoint.calls, 2);
    });

    it('tries each live secret once, skipping repeats, and answers the first refusal when all are refused', async () => {
      const { broker, endpoint, secrets, metrics } = setup();
      providerTaking(endpoint, 'nobody-has-this');
      secrets.rotation = [
        { stage: 'pending', credentials: { clientId: 'id', clientSecret: 'pending' } },
        { stage: 'previous', credentials: { clientId: 'id', clientSecret: 'secret' } },
      ];
      await rejectsWith(broker.getToken({ client: 'bwell' }), 'upstream_error');
      assert.deepEqual(
        endpoint.requests.map((request) => request.credentials.clientSecret),
        ['secret', 'pending'],
      );
      assert.equal(metrics.of('SecretFallbacks'), 0);
    });

    it('tries the re-read secret before the rotation ones', async () => {
      const { broker, endpoint, secrets } = setup();
      providerTaking(endpoint, 'previous');
      secrets.rotation = [{ stage: 'previous', credentials: { clientId: 'id', clientSecret: 'previous' } }];
      secrets.getCredentials = async (_name, _client, options) =>
        options?.refresh ? { clientId: 'id', clientSecret: 'reread' } : { clientId: 'id', clientSecret: 'cached' };
      await broker.getToken({ client: 'bwell' });
      assert.deepEqual(
        endpoint.requests.map((request) => request.credentials.clientSecret),
        ['cached', 'reread', 'previous'],
      );
    });

    it('does not re-read the secret for other refusals', async () => {
      const { broker, endpoint, secrets } = setup();
      endpoint.answerWith(async () => {
        throw new BrokerError('upstream_error', 'refused: invalid_scope', { upstreamError: 'invalid_scope' });
      });
      await rejectsWith(broker.getToken({ client: 'bwell' }), 'upstream_error');
      assert.equal(secrets.refreshes, 0);
      assert.equal(secrets.rotationReads, 0);
    });
  });

  describe('invalidation', () => {
    it('drops the client tokens from memory and the table, and fetches anew', async () => {
      const { broker, cache, endpoint } = setup();
      await broker.getToken({ client: 'bwell' });
      await broker.getToken({ client: 'plain' });
      assert.deepEqual(await broker.invalidate('bwell'), { dropped: 1 });
      assert.deepEqual([...cache.items.keys()], ['plain#a b']);
      const again = await broker.getToken({ client: 'bwell' });
      assert.equal(again.cache, 'fetched');
      assert.equal((await broker.getToken({ client: 'plain' })).cache, 'memory');
      assert.equal(endpoint.calls, 3);
    });

    it('makes other containers drop their copies within the revocation check interval', async () => {
      const { broker, newBroker, clock, cache, endpoint } = setup();
      await broker.getToken({ client: 'bwell' });
      await newBroker().invalidate('bwell');
      clock.advance(29_000);
      const gets = cache.gets;
      const reads = cache.revocationReads;
      assert.equal((await broker.getToken({ client: 'bwell' })).cache, 'memory');
      assert.equal(cache.revocationReads, reads, 'no revocation look within the interval');
      assert.equal(cache.gets, gets, 'a memory hit within the interval does no I/O');
      clock.advance(2_000);
      // The look happens before the answer: a container frozen between requests runs nothing in the background.
      const after = await broker.getToken({ client: 'bwell' });
      assert.equal(cache.revocationReads, reads + 1);
      assert.equal(after.cache, 'fetched');
      assert.equal(after.response.access_token, 'token-2');
      assert.equal(endpoint.calls, 2);
    });

    it('does not serve a token another container revoked once the interval has passed', async () => {
      const { broker, newBroker, clock, endpoint } = setup();
      const revoked = await broker.getToken({ client: 'bwell' });
      await newBroker().invalidate('bwell');
      clock.advance(31_000);
      const answer = await broker.getToken({ client: 'bwell' });
      assert.notEqual(answer.response.access_token, revoked.response.access_token);
      assert.equal(answer.cache, 'fetched');
      assert.equal(endpoint.calls, 2);
    });

    it('makes concurrent requests share one revocation check, and serves none of them the revoked token', async () => {
      const { broker, newBroker, clock, cache } = setup();
      const revoked = await broker.getToken({ client: 'bwell' });
      await newBroker().invalidate('bwell');
      clock.advance(31_000);
      const before = cache.revocationReads;
      const answers = await Promise.all(Array.from({ length: 10 }, () => broker.getToken({ client: 'bwell' })));
      assert.equal(cache.revocationReads, before + 1, 'one look for all of them');
      assert.ok(answers.every((answer) => answer.response.access_token !== revoked.response.access_token));
      // Checked just now: the next memory hit does no I/O.
      const reads = cache.revocationReads;
      assert.equal((await broker.getToken({ client: 'bwell' })).cache, 'memory');
      assert.equal(cache.revocationReads, reads);
    });

    it('refuses to store a renewal begun before an invalidation that landed during it; a fresh container misses', async () => {
      const { broker, newBroker, clock, cache, endpoint } = setup();
      const answered = deferred<void>();
      const started = deferred<void>();
      endpoint.answerWith(async (request, call) => {
        started.resolve();
        await answered.promise;
        return { accessToken: `token-${call}`, tokenType: 'Bearer', expiresIn: 3600, scope: request.scope };
      });
      const renewal = broker.getToken({ client: 'bwell' });
      await started.promise;
      clock.advance(1_000);
      await newBroker().invalidate('bwell');
      clock.advance(1_000);
      answered.resolve();
      // The requests that began before the invalidation get the token; nothing keeps it.
      assert.equal((await renewal).response.access_token, 'token-1');
      assert.deepEqual(cache.putOutcomes, [{ outcome: 'revoked', revokedAt: clock.now() - 1_000 }]);
      assert.equal(cache.items.size, 0);
      endpoint.answerWith(async (request, call) => ({
        accessToken: `token-${call}`,
        tokenType: 'Bearer',
        expiresIn: 3600,
        scope: request.scope,
      }));
      const fresh = await newBroker().getToken({ client: 'bwell' });
      assert.equal(fresh.cache, 'fetched');
      assert.equal(fresh.response.access_token, 'token-2');
      // The renewing container learnt the marker: its copy is gone from memory too.
      const again = await broker.getToken({ client: 'bwell' });
      assert.notEqual(again.response.access_token, 'token-1');
    });

    it('makes a fresh container check the revocation marker before it serves a token from the table', async () => {
      const { broker, newBroker, clock, cache, endpoint } = setup();
      await broker.getToken({ client: 'bwell' });
      // The marker is written, the invalidation has not reached the token item yet.
      clock.advance(1_000);
      cache.revocations.set('bwell', clock.now());
      clock.advance(1_000);
      const gets = cache.gets;
      const fresh = await newBroker().getToken({ client: 'bwell' });
      assert.equal(fresh.cache, 'fetched');
      assert.equal(fresh.response.access_token, 'token-2');
      assert.equal(endpoint.calls, 2);
      // The token once beside the marker (not in a round trip of its own), and once more under the lease.
      assert.equal(cache.gets, gets + 2);
    });

    it('refuses to invalidate an unknown client', async () => {
      const { broker } = setup();
      await rejectsWith(broker.invalidate('nobody'), 'unknown_client');
    });

    it('reports a table that cannot drop the tokens as unavailable', async () => {
      const { broker, cache } = setup();
      cache.failing = true;
      await rejectsWith(broker.invalidate('bwell'), 'unavailable');
    });
  });
});
