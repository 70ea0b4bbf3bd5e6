import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { deriveSealingKey, type SealedPayload, seal, unseal } from '../../lambdas/core/sealing.js';

const payload: SealedPayload = {
  accessToken: 'eyJ.secret-token.sig',
  tokenType: 'Bearer',
  scope: 'system/*.read',
  issuedAt: 1_800_000_000_000,
  expiresAt: 1_800_003_600_000,
};

describe('token sealing', () => {
  it('opens what it sealed under the same secret and cache key', () => {
    const key = deriveSealingKey('client-secret-1');
    assert.deepEqual(unseal(key, 'bwell#system/*.read', seal(key, 'bwell#system/*.read', payload)), payload);
  });

  it('does not show the token in the sealed bytes', () => {
    const sealed = Buffer.from(seal(deriveSealingKey('s'), 'k', payload));
    assert.equal(sealed.includes(Buffer.from(payload.accessToken)), false);
  });

  it('reads a token sealed under a rotated-away secret as nothing', () => {
    const sealed = seal(deriveSealingKey('old-secret'), 'bwell#a', payload);
    assert.equal(unseal(deriveSealingKey('new-secret'), 'bwell#a', sealed), undefined);
  });

  it('refuses a sealed token moved to another cache key', () => {
    const key = deriveSealingKey('s');
    assert.equal(unseal(key, 'bwell#system/*.write', seal(key, 'bwell#system/*.read', payload)), undefined);
  });

  it('refuses tampered, truncated and empty bytes', () => {
    const key = deriveSealingKey('s');
    const sealed = Buffer.from(seal(key, 'k', payload));
    const tampered = Buffer.from(sealed);
    tampered[20] = (tampered[20] ?? 0) ^ 1;
    assert.equal(unseal(key, 'k', tampered), undefined);
    assert.equal(unseal(key, 'k', sealed.subarray(0, 20)), undefined);
    assert.equal(unseal(key, 'k', new Uint8Array()), undefined);
  });

  it('uses a fresh nonce for every seal', () => {
    const key = deriveSealingKey('s');
    assert.notDeepEqual(seal(key, 'k', payload), seal(key, 'k', payload));
  });
});
