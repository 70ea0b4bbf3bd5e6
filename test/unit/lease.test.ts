import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BrokerError } from '../../lambdas/core/errors.js';
import { Leases } from '../../lambdas/core/lease.js';
import type { CachedToken } from '../../lambdas/core/ports.js';
import { tableFailureReport } from '../../lambdas/core/shared-tier.js';
import { CountingMetrics, FakeClock, MapTokenCache, RecordingLogger } from '../support/fakes.js';

const slot = { clientName: 'bwell', key: 'bwell#system/*.read' };
const upstreamBudgetMs = 5_000;
const leaseMs = 7_000;
const pollMs = 100;
const waitSlackMs = 200;

function setup() {
  const clock = new FakeClock();
  const cache = new MapTokenCache();
  const metrics = new CountingMetrics();
  const logger = new RecordingLogger();
  const reportFailure = tableFailureReport(metrics, logger);
  const newLeases = () =>
    new Leases({ cache, clock, metrics, logger, reportFailure, upstreamBudgetMs, leaseMs, pollMs, waitSlackMs });
  return { clock, cache, metrics, logger, leases: newLeases(), newLeases };
}

function tokenAt(now: number): CachedToken {
  return {
    accessToken: 'stored',
    tokenType: 'Bearer',
    scope: 'system/*.read',
    issuedAt: now,
    expiresAt: now + 3_600_000,
  };
}

async function rejectsWith(promise: Promise<unknown>, code: string, message: RegExp) {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof BrokerError);
    assert.equal(error.code, code);
    assert.match(error.message, message);
    return true;
  });
}

describe('Leases', () => {
  it('grants a free lease for leaseMs, with a deadline the upstream budget from now', async () => {
    const { leases, cache, clock } = setup();
    const holder = leases.newHolder();
    const started = clock.now();
    assert.deepEqual(await leases.acquire(slot, holder), { state: 'held', deadline: started + upstreamBudgetMs });
    assert.deepEqual(cache.leases.get(slot.key), { holder, until: started + leaseMs });
  });

  it('refuses a second holder while the first holds the lease, and grants it once the first releases', async () => {
    const { newLeases } = setup();
    const first = newLeases();
    const second = newLeases();
    const firstHolder = first.newHolder();
    const secondHolder = second.newHolder();
    assert.equal((await first.acquire(slot, firstHolder)).state, 'held');
    assert.deepEqual(await second.acquire(slot, secondHolder), { state: 'taken' });
    await first.release(slot, firstHolder);
    assert.equal(await second.read(slot), undefined);
    assert.equal((await second.acquire(slot, secondHolder)).state, 'held');
  });

  it('names each renewal a holder of its own, within one container name', () => {
    const { leases } = setup();
    const [a, b] = [leases.newHolder(), leases.newHolder()];
    assert.notEqual(a, b);
    assert.equal(a.split('/')[0], b.split('/')[0]);
  });

  it('a second holder waits until the first releases, and is answered with the token it stored', async () => {
    const { newLeases, cache, clock, metrics } = setup();
    const first = newLeases();
    const second = newLeases();
    const firstHolder = first.newHolder();
    await first.acquire(slot, firstHolder);
    let stored: CachedToken | undefined;
    let looks = 0;
    const waited = second.awaitHolder(slot, second.newHolder(), async () => {
      looks += 1;
      // The holder finishes during the third look: it stores its token, then releases.
      if (looks === 3) {
        stored = tokenAt(clock.now());
        await first.release(slot, firstHolder);
      }
      return stored;
    });
    assert.equal(await waited, stored);
    assert.equal(looks, 3);
    assert.equal(cache.leaseReads, 3, 'one lease read per look');
    assert.equal(metrics.of('LeaseWaits'), 1);
  });

  it('answers unavailable, without taking the lease, when the holder released it and stored no token', async () => {
    const { newLeases, cache } = setup();
    const first = newLeases();
    const firstHolder = first.newHolder();
    await first.acquire(slot, firstHolder);
    const second = newLeases();
    const waited = second.awaitHolder(slot, second.newHolder(), async () => {
      await first.release(slot, firstHolder);
      return undefined;
    });
    await rejectsWith(waited, 'unavailable', /another request for a token of client bwell just failed/);
    assert.equal(cache.leaseAttempts, 1, 'only the first holder asked for the lease');
  });

  it('takes over a lease that lapses while it waits, and logs the takeover', async () => {
    const { leases, cache, clock, logger } = setup();
    cache.leases.set(slot.key, { holder: 'dead-container', until: clock.now() + 1_000 });
    const holder = leases.newHolder();
    const waited = await leases.awaitHolder(slot, holder, async () => undefined);
    assert.ok('deadline' in waited);
    assert.equal(waited.state, 'held');
    assert.ok(clock.now() > Date.UTC(2026, 10, 29, 12, 0, 1), 'not before the lease lapsed');
    assert.equal(waited.deadline, clock.now() + upstreamBudgetMs);
    assert.equal(cache.leases.get(slot.key)?.holder, holder);
    assert.ok(logger.lines.some((line) => line.message === 'took over the lapsed lease of another container'));
  });

  it('gives up once the lease period and the upstream budget have passed and the holder has not finished', async () => {
    const { leases, cache, clock } = setup();
    // A holder that keeps its lease and never stores a token.
    cache.leases.set(slot.key, { holder: 'stuck-container', until: Number.MAX_SAFE_INTEGER });
    const started = clock.now();
    await rejectsWith(
      leases.awaitHolder(slot, leases.newHolder(), async () => undefined),
      'unavailable',
      /another request for a token of client bwell has not finished/,
    );
    const waitedMs = clock.now() - started;
    const giveUpMs = leaseMs + waitSlackMs + upstreamBudgetMs + waitSlackMs;
    assert.ok(waitedMs >= giveUpMs, `waited ${waitedMs} ms`);
    assert.ok(waitedMs < giveUpMs + 1.5 * pollMs, `waited ${waitedMs} ms`);
    assert.equal(cache.leaseAttempts, 0, 'a lease that never lapsed is never taken over');
  });

  it('does not take over a lease that lapses after one lease period of waiting', async () => {
    const { leases, cache, clock } = setup();
    cache.leases.set(slot.key, { holder: 'slow-container', until: clock.now() + leaseMs + waitSlackMs + 1_000 });
    await rejectsWith(
      leases.awaitHolder(slot, leases.newHolder(), async () => undefined),
      'unavailable',
      /not finished/,
    );
    assert.equal(cache.leaseAttempts, 0);
  });

  it('goes ahead alone with its deadline when the table cannot hold a lease, and reports it', async () => {
    const { leases, cache, clock, metrics, logger } = setup();
    cache.failing = true;
    assert.deepEqual(await leases.acquire(slot, leases.newHolder()), {
      state: 'unknown',
      deadline: clock.now() + upstreamBudgetMs,
    });
    assert.equal(metrics.of('SharedCacheErrors'), 1);
    assert.deepEqual(logger.lines, [
      {
        level: 'warn',
        message: "token table lease failed; continuing with this container's memory",
        attributes: { client: 'bwell', errorName: 'ServiceUnavailable' },
      },
    ]);
  });

  it('reads an unreadable lease as such and a failed release as nothing, reporting both', async () => {
    const { leases, cache, metrics, logger } = setup();
    cache.failing = true;
    assert.equal(await leases.read(slot), 'unreadable');
    await leases.release(slot, leases.newHolder());
    assert.equal(metrics.of('SharedCacheErrors'), 2);
    assert.deepEqual(
      logger.lines.map((line) => line.message),
      [
        "token table lease read failed; continuing with this container's memory",
        "token table lease release failed; continuing with this container's memory",
      ],
    );
  });

  it('keeps waiting through an unreadable lease, and is answered once the token is there', async () => {
    const { leases, cache, clock } = setup();
    cache.failing = true;
    let looks = 0;
    const token = tokenAt(clock.now());
    const waited = await leases.awaitHolder(slot, leases.newHolder(), async () => {
      looks += 1;
      return looks === 4 ? token : undefined;
    });
    assert.equal(waited, token);
    assert.equal(cache.leaseAttempts, 0, 'an unreadable lease is never taken over');
  });
});
