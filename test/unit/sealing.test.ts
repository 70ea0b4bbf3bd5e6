import assert from 'node:assert/strict';
import { hkdfSync, randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { deriveSealingKey, type SealedPayload, seal, unseal } from '../../lambdas/core/sealing.js';

const payload: SealedPayload = {
  accessToken: 'eyJ.secret-token.sig',
  tokenType: 'Bearer',
  scope: 'system/*.read',
  issuedAt: 1_800_000_000_000,
  expiresAt: 1_800_003_600_000,
};
const deploymentKey = randomBytes(32);
const cacheKey = 'bwell#system/*.read';
const keyFor = (key: string, secret = 'client-secret-1', sealingKey: Uint8Array = deploymentKey) =>
  deriveSealingKey(sealingKey, key, secret);

describe('token sealing', () => {
  it('opens what it sealed under the same sealing key, secret and cache key', () => {
    assert.deepEqual(unseal(keyFor(cacheKey), cacheKey, seal(keyFor(cacheKey), cacheKey, payload)), payload);
  });

  it('does not show the token in the sealed bytes', () => {
    const sealed = Buffer.from(seal(keyFor('k'), 'k', payload));
    assert.equal(sealed.includes(Buffer.from(payload.accessToken)), false);
  });

  it('cannot be opened with the client secret alone: only with the deployment sealing key', () => {
    const secret = 'client-secret-1';
    const sealed = seal(keyFor(cacheKey, secret), cacheKey, payload);
    // The derivation of format 1: what a thief holding the table and guessing the secret could compute.
    const fromSecretAlone = Buffer.from(
      hkdfSync(
        'sha256',
        Buffer.from(secret),
        Buffer.from('token-broker'),
        Buffer.from('token-broker/token-seal/v1'),
        32,
      ),
    );
    assert.equal(unseal(fromSecretAlone, cacheKey, sealed), undefined);
    assert.equal(unseal(keyFor(cacheKey, secret, randomBytes(32)), cacheKey, sealed), undefined, 'another sealing key');
    assert.deepEqual(unseal(keyFor(cacheKey, secret), cacheKey, sealed), payload);
  });

  it('reads a token sealed under a rotated-away secret, or a rotated-away sealing key, as nothing', () => {
    const sealed = seal(keyFor('bwell#a', 'old-secret'), 'bwell#a', payload);
    assert.equal(unseal(keyFor('bwell#a', 'new-secret'), 'bwell#a', sealed), undefined);
    assert.equal(unseal(keyFor('bwell#a', 'old-secret', randomBytes(32)), 'bwell#a', sealed), undefined);
  });

  it('refuses a sealed token moved to another cache key, even with that key derived', () => {
    const sealed = seal(keyFor(cacheKey), cacheKey, payload);
    assert.equal(unseal(keyFor(cacheKey), 'bwell#system/*.write', sealed), undefined);
    assert.equal(unseal(keyFor('bwell#system/*.write'), 'bwell#system/*.write', sealed), undefined);
  });

  it('refuses a sealing key too short to be the generated one', () => {
    assert.throws(() => deriveSealingKey(Buffer.from('short'), cacheKey, 's'), RangeError);
  });

  it('refuses tampered, truncated and empty bytes', () => {
    const key = keyFor('k');
    const sealed = Buffer.from(seal(key, 'k', payload));
    const tampered = Buffer.from(sealed);
    tampered[20] = (tampered[20] ?? 0) ^ 1;
    assert.equal(unseal(key, 'k', tampered), undefined);
    assert.equal(unseal(key, 'k', sealed.subarray(0, 20)), undefined);
    assert.equal(unseal(key, 'k', new Uint8Array()), undefined);
  });

  it('uses a fresh nonce for every seal', () => {
    const key = keyFor('k');
    assert.notDeepEqual(seal(key, 'k', payload), seal(key, 'k', payload));
  });
});
