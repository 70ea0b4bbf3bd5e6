import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import type { CachedToken } from '../../lambdas/core/ports.js';
import { sealFormat } from '../../lambdas/core/sealing.js';
import { type SealMaterial, SharedTier, tableFailureReport } from '../../lambdas/core/shared-tier.js';
import { CountingMetrics, FakeClock, FixedSealingKey, MapTokenCache, RecordingLogger } from '../support/fakes.js';

const slot = { clientName: 'bwell', key: 'bwell#system/*.read' };

function setup() {
  const clock = new FakeClock();
  const cache = new MapTokenCache();
  const sealingKeys = new FixedSealingKey();
  const metrics = new CountingMetrics();
  const logger = new RecordingLogger();
  let revokedAt: number | undefined;
  const shared = new SharedTier({
    cache,
    sealingKeys,
    revocations: {
      isRevoked: (clientName, token) =>
        clientName === 'bwell' && revokedAt !== undefined && token.issuedAt <= revokedAt,
    },
    reportFailure: tableFailureReport(metrics, logger),
  });
  const material: SealMaterial = {
    credentials: { clientId: 'id', clientSecret: 'secret' },
    sealingKey: sealingKeys.key,
  };
  const token: CachedToken = {
    accessToken: 'access-token-value',
    tokenType: 'Bearer',
    scope: 'system/*.read',
    issuedAt: clock.now(),
    expiresAt: clock.now() + 3_600_000,
  };
  const revoke = (at: number) => {
    revokedAt = at;
  };
  return { clock, cache, sealingKeys, metrics, logger, shared, material, token, revoke };
}

describe('SharedTier', () => {
  it('reads back the token it wrote, stored sealed with only its expiry in the clear', async () => {
    const { shared, cache, material, token } = setup();
    assert.deepEqual(await shared.write(slot, token, material), { outcome: 'stored' });
    const item = cache.items.get(slot.key);
    assert.equal(item?.format, sealFormat);
    assert.equal(item?.expiresAt, token.expiresAt);
    assert.equal(Buffer.from(item?.sealed ?? []).includes('access-token-value'), false);
    assert.deepEqual(await shared.read(slot, material), token);
  });

  it('reads the sealing key from its source', async () => {
    const { shared, sealingKeys } = setup();
    assert.equal(await shared.sealingKey(), sealingKeys.key);
    assert.equal(sealingKeys.reads, 1);
  });

  it('reads a token sealed under another secret, another sealing key or another cache key as a miss', async () => {
    const { shared, cache, material, token } = setup();
    await shared.write(slot, token, material);
    const otherSecret = { ...material, credentials: { clientId: 'id', clientSecret: 'rotated' } };
    assert.equal(await shared.read(slot, otherSecret), undefined);
    assert.equal(await shared.read(slot, { ...material, sealingKey: randomBytes(32) }), undefined);
    const moved = { clientName: 'bwell', key: 'bwell#system/*.write' };
    cache.items.set(moved.key, cache.items.get(slot.key) ?? assert.fail('stored'));
    assert.equal(await shared.read(moved, material), undefined);
  });

  it('reads an item of another format as a miss', async () => {
    const { shared, cache, material, token } = setup();
    await shared.write(slot, token, material);
    const item = cache.items.get(slot.key) ?? assert.fail('stored');
    cache.items.set(slot.key, { ...item, format: 1 });
    assert.equal(await shared.read(slot, material), undefined);
  });

  it('reads a token issued at or before its client was revoked as a miss', async () => {
    const { shared, material, token, revoke } = setup();
    await shared.write(slot, token, material);
    revoke(token.issuedAt - 1);
    assert.deepEqual(await shared.read(slot, material), token);
    revoke(token.issuedAt);
    assert.equal(await shared.read(slot, material), undefined);
  });

  it('opens an item read before the keys were, as the broker does beside the secret read', async () => {
    const { shared, material, token } = setup();
    await shared.write(slot, token, material);
    const sealed = await shared.readSealed(slot);
    assert.deepEqual(shared.open(slot, material, sealed), token);
    assert.equal(shared.open(slot, material, undefined), undefined);
  });

  it('passes on what the table made of a write: not stored beside a later token, refused when revoked', async () => {
    const { shared, cache, material, token } = setup();
    await shared.write(slot, token, material);
    assert.deepEqual(await shared.write(slot, { ...token, expiresAt: token.expiresAt - 1 }, material), {
      outcome: 'not-stored',
    });
    cache.revocations.set('bwell', token.issuedAt);
    assert.deepEqual(await shared.write(slot, token, material), { outcome: 'revoked', revokedAt: token.issuedAt });
  });

  it('reads a failing table as a miss and writes nothing to it, reporting each failure without the token', async () => {
    const { shared, cache, material, token, metrics, logger } = setup();
    cache.failing = true;
    assert.equal(await shared.read(slot, material), undefined);
    assert.equal(await shared.write(slot, token, material), undefined);
    assert.equal(metrics.of('SharedCacheErrors'), 2);
    assert.deepEqual(logger.lines, [
      {
        level: 'warn',
        message: "token table read failed; continuing with this container's memory",
        attributes: { client: 'bwell', errorName: 'ServiceUnavailable' },
      },
      {
        level: 'warn',
        message: "token table write failed; continuing with this container's memory",
        attributes: { client: 'bwell', errorName: 'ServiceUnavailable' },
      },
    ]);
    assert.equal(JSON.stringify(logger.lines).includes('access-token-value'), false);
  });
});
