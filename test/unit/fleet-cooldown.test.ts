import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { firstCooldownSeconds, maxCooldownSeconds } from '../../lambdas/core/cooldown.js';
import { BrokerError } from '../../lambdas/core/errors.js';
import { FleetCooldowns } from '../../lambdas/core/fleet-cooldown.js';
import { tableFailureReport } from '../../lambdas/core/shared-tier.js';
import { CountingMetrics, FakeClock, MapTokenCache, RecordingLogger } from '../support/fakes.js';

function setup() {
  const clock = new FakeClock();
  const cache = new MapTokenCache();
  const metrics = new CountingMetrics();
  const logger = new RecordingLogger();
  const newCooldowns = () =>
    new FleetCooldowns({ cache, clock, metrics, logger, reportFailure: tableFailureReport(metrics, logger) });
  return { clock, cache, metrics, logger, cooldowns: newCooldowns(), newCooldowns };
}

const providerFailure = (options: { status?: number; upstreamError?: string; retryAfterMs?: number } = {}) =>
  new BrokerError('upstream_error', 'the token endpoint of client bwell refused the request', {
    upstreamStatus: options.status ?? 503,
    ...(options.upstreamError === undefined ? {} : { upstreamError: options.upstreamError }),
    ...(options.retryAfterMs === undefined ? {} : { upstreamRetryAfterMs: options.retryAfterMs }),
  });

describe('FleetCooldowns', () => {
  it('starts a cooldown on a provider failure: known here at once, written for the fleet, counted and logged', async () => {
    const { cooldowns, cache, clock, metrics, logger } = setup();
    await cooldowns.start('bwell', providerFailure(), undefined);
    const expected = {
      until: clock.now() + firstCooldownSeconds.provider_failing * 1000,
      reason: 'provider_failing',
      failures: 1,
    };
    assert.deepEqual(cooldowns.lastKnown('bwell'), expected);
    assert.deepEqual(cache.cooldowns.get('bwell'), expected);
    assert.equal(metrics.of('Cooldowns'), 1);
    assert.deepEqual(logger.lines, [
      {
        level: 'warn',
        message: 'token endpoint failing; every container waits before calling it again',
        attributes: { client: 'bwell', reason: 'provider_failing', failures: 1, waitSeconds: 5 },
      },
    ]);
  });

  it('starts none for a refusal of the request itself, or for a failure on the broker side', async () => {
    const { cooldowns, cache, metrics } = setup();
    await cooldowns.start('bwell', providerFailure({ status: 400, upstreamError: 'invalid_scope' }), undefined);
    await cooldowns.start('bwell', new Error('secrets unreachable'), undefined);
    assert.equal(cooldowns.lastKnown('bwell'), undefined);
    assert.equal(cache.cooldowns.size, 0);
    assert.equal(metrics.of('Cooldowns'), 0);
  });

  it('doubles the pause after the previous cooldown, and honours a Retry-After up to maxCooldownSeconds', async () => {
    const { cooldowns, clock } = setup();
    await cooldowns.start('bwell', providerFailure({ status: 401, upstreamError: 'invalid_client' }), undefined);
    const first = cooldowns.lastKnown('bwell');
    clock.advance(firstCooldownSeconds.invalid_client * 1000);
    await cooldowns.start('bwell', providerFailure({ status: 401, upstreamError: 'invalid_client' }), first);
    assert.deepEqual(cooldowns.lastKnown('bwell'), {
      until: clock.now() + 2 * firstCooldownSeconds.invalid_client * 1000,
      reason: 'invalid_client',
      failures: 2,
    });
    await cooldowns.start('plain', providerFailure({ status: 429, retryAfterMs: 86_400_000 }), undefined);
    assert.equal(cooldowns.lastKnown('plain')?.until, clock.now() + maxCooldownSeconds * 1000);
  });

  it('learns the cooldown another container wrote, and keeps what it knew when the table has none', async () => {
    const { newCooldowns, clock } = setup();
    const [writer, reader] = [newCooldowns(), newCooldowns()];
    await writer.start('bwell', providerFailure(), undefined);
    const shared = await reader.readShared('bwell');
    assert.equal(reader.lastKnown('bwell'), undefined, 'reading alone teaches nothing');
    reader.learn('bwell', shared);
    assert.deepEqual(reader.lastKnown('bwell'), shared);
    reader.learn('bwell', undefined);
    assert.deepEqual(reader.lastKnown('bwell'), shared);
    assert.ok((reader.lastKnown('bwell')?.until ?? 0) > clock.now());
  });

  it('ends the cooldown here and for the fleet once the provider answers', async () => {
    const { cooldowns, cache } = setup();
    await cooldowns.start('bwell', providerFailure(), undefined);
    await cooldowns.end('bwell');
    assert.equal(cooldowns.lastKnown('bwell'), undefined);
    assert.equal(cache.cooldowns.has('bwell'), false);
  });

  it('holds its own cooldown when the table fails, and reports the read, the write and the clear', async () => {
    const { cooldowns, cache, metrics, logger } = setup();
    cache.failing = true;
    assert.equal(await cooldowns.readShared('bwell'), undefined);
    await cooldowns.start('bwell', providerFailure(), undefined);
    assert.equal(cooldowns.lastKnown('bwell')?.reason, 'provider_failing');
    await cooldowns.end('bwell');
    assert.equal(cooldowns.lastKnown('bwell'), undefined);
    assert.equal(metrics.of('SharedCacheErrors'), 3);
    assert.deepEqual(
      logger.lines.filter((line) => line.message.startsWith('token table')).map((line) => line.message),
      [
        "token table cooldown read failed; continuing with this container's memory",
        "token table cooldown write failed; continuing with this container's memory",
        "token table cooldown clear failed; continuing with this container's memory",
      ],
    );
  });
});
