import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BrokerError } from '../../lambdas/core/errors.js';
import { MemoryTier } from '../../lambdas/core/memory-tier.js';
import type { CachedToken } from '../../lambdas/core/ports.js';
import { Revocations } from '../../lambdas/core/revocation.js';
import { tableFailureReport } from '../../lambdas/core/shared-tier.js';
import { CountingMetrics, deferred, FakeClock, MapTokenCache, RecordingLogger } from '../support/fakes.js';

const checkIntervalMs = 30_000;
const slot = { clientName: 'bwell', key: 'bwell#system/*.read' };

function setup() {
  const clock = new FakeClock();
  const cache = new MapTokenCache();
  const metrics = new CountingMetrics();
  const logger = new RecordingLogger();
  const memory = new MemoryTier(clock);
  const revocations = new Revocations({
    cache,
    clock,
    checkIntervalMs,
    memory,
    reportFailure: tableFailureReport(metrics, logger),
  });
  return { clock, cache, metrics, logger, memory, revocations };
}

function tokenIssuedAt(issuedAt: number): CachedToken {
  return { accessToken: 't', tokenType: 'Bearer', scope: 'a', issuedAt, expiresAt: issuedAt + 3_600_000 };
}

describe('Revocations', () => {
  it('knows of no revocation before it looks, and takes a first look only once', async () => {
    const { revocations, cache, clock } = setup();
    assert.equal(revocations.isRevoked('bwell', tokenIssuedAt(clock.now())), false);
    assert.equal(revocations.checkDue('bwell'), undefined, 'a container that never looked has no check due');
    await revocations.firstLook('bwell');
    assert.equal(cache.revocationReads, 1);
    assert.equal(revocations.firstLook('bwell'), undefined);
    assert.equal(cache.revocationReads, 1);
  });

  it('treats a token issued at or before the marker as revoked, and one issued after it as not', async () => {
    const { revocations, cache, clock } = setup();
    const revokedAt = clock.now();
    cache.revocations.set('bwell', revokedAt);
    await revocations.look('bwell');
    assert.equal(revocations.isRevoked('bwell', tokenIssuedAt(revokedAt)), true);
    assert.equal(revocations.isRevoked('bwell', tokenIssuedAt(revokedAt + 1)), false);
    assert.equal(revocations.isRevoked('plain', tokenIssuedAt(revokedAt)), false, 'another client is not revoked');
  });

  it('looks again only once the check interval has passed since the last look', async () => {
    const { revocations, cache, clock } = setup();
    await revocations.look('bwell');
    clock.advance(checkIntervalMs - 1);
    assert.equal(revocations.checkDue('bwell'), undefined);
    clock.advance(1);
    await revocations.checkDue('bwell');
    assert.equal(cache.revocationReads, 2);
    assert.equal(revocations.checkDue('bwell'), undefined, 'the look just taken holds for another interval');
  });

  it('makes concurrent checks share one look at the table', async () => {
    const { revocations, cache, clock } = setup();
    await revocations.look('bwell');
    clock.advance(checkIntervalMs);
    const gate = deferred<number | undefined>();
    const revokedAt = cache.revokedAt.bind(cache);
    cache.revokedAt = async (clientName) => {
      await gate.promise;
      return revokedAt(clientName);
    };
    const checks = [revocations.checkDue('bwell'), revocations.checkDue('bwell'), revocations.checkDue('bwell')];
    assert.ok(checks.every((check) => check !== undefined && check === checks[0]));
    gate.resolve(undefined);
    await Promise.all(checks);
    assert.equal(cache.revocationReads, 2);
  });

  it("drops the client's remembered tokens when a look finds a newer marker", async () => {
    const { revocations, cache, clock, memory } = setup();
    const before = tokenIssuedAt(clock.now());
    memory.remember(slot, before);
    await revocations.look('bwell');
    assert.equal(memory.get(slot.key), before, 'no marker: nothing dropped');
    clock.advance(1_000);
    cache.revocations.set('bwell', clock.now());
    clock.advance(checkIntervalMs);
    await revocations.checkDue('bwell');
    assert.equal(memory.get(slot.key), undefined);
  });

  it('keeps a revocation made in this container when a look reads an older marker or none', async () => {
    const { revocations, clock } = setup();
    const startedAt = clock.now();
    const invalidatedAt = clock.now() + 5;
    revocations.note('bwell', invalidatedAt, invalidatedAt);
    revocations.note('bwell', startedAt - 60_000, startedAt);
    revocations.note('bwell', undefined, startedAt);
    assert.equal(revocations.isRevoked('bwell', tokenIssuedAt(invalidatedAt)), true);
    assert.equal(revocations.isRevoked('bwell', tokenIssuedAt(invalidatedAt + 1)), false);
  });

  it('keeps serving when the marker cannot be read: reported, and the next look an interval later', async () => {
    const { revocations, cache, clock, metrics, logger } = setup();
    cache.failing = true;
    await revocations.look('bwell');
    assert.equal(revocations.isRevoked('bwell', tokenIssuedAt(clock.now())), false);
    assert.equal(metrics.of('SharedCacheErrors'), 1);
    assert.equal(
      logger.lines[0]?.message,
      "token table revocation check failed; continuing with this container's memory",
    );
    assert.equal(revocations.checkDue('bwell'), undefined);
    clock.advance(checkIntervalMs);
    assert.notEqual(revocations.checkDue('bwell'), undefined);
  });

  it('revokes at once in this container and in the table, and reports how many tokens the table dropped', async () => {
    const { revocations, cache, clock, memory } = setup();
    const remembered = tokenIssuedAt(clock.now());
    memory.remember(slot, remembered);
    cache.items.set(slot.key, { format: 2, sealed: new Uint8Array(40), expiresAt: remembered.expiresAt });
    assert.equal(await revocations.revoke('bwell'), 1);
    assert.equal(cache.revocations.get('bwell'), clock.now());
    assert.equal(memory.get(slot.key), undefined);
    assert.equal(revocations.isRevoked('bwell', remembered), true);
    assert.equal(revocations.checkDue('bwell'), undefined, 'the revocation counts as a look');
  });

  it('answers unavailable when the table cannot revoke, having revoked in this container all the same', async () => {
    const { revocations, cache, clock, metrics } = setup();
    cache.failing = true;
    await assert.rejects(
      revocations.revoke('bwell'),
      (error: unknown) =>
        error instanceof BrokerError &&
        error.code === 'unavailable' &&
        error.message === 'the token table could not drop the tokens of client bwell',
    );
    assert.equal(metrics.of('SharedCacheErrors'), 1);
    assert.equal(revocations.isRevoked('bwell', tokenIssuedAt(clock.now())), true);
  });
});
