import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryTier } from '../../lambdas/core/memory-tier.js';
import type { CachedToken } from '../../lambdas/core/ports.js';
import { FakeClock } from '../support/fakes.js';

const read = { clientName: 'bwell', key: 'bwell#system/*.read' };
const write = { clientName: 'bwell', key: 'bwell#system/*.write' };
const other = { clientName: 'plain', key: 'plain#a' };

function token(name: string, issuedAt: number, lifetimeMs = 3_600_000): CachedToken {
  return { accessToken: name, tokenType: 'Bearer', scope: 'a', issuedAt, expiresAt: issuedAt + lifetimeMs };
}

describe('MemoryTier', () => {
  it('answers a key with the token last remembered for it, and other keys with nothing', () => {
    const clock = new FakeClock();
    const memory = new MemoryTier(clock);
    const first = token('first', clock.now());
    const second = token('second', clock.now());
    memory.remember(read, first);
    assert.equal(memory.get(read.key), first);
    memory.remember(read, second);
    assert.equal(memory.get(read.key), second);
    assert.equal(memory.get(write.key), undefined);
  });

  it('lets go of the expired tokens of every key when it remembers one', () => {
    const clock = new FakeClock();
    const memory = new MemoryTier(clock);
    const shortLived = token('short', clock.now(), 1_000);
    const longLived = token('long', clock.now());
    memory.remember(read, shortLived);
    memory.remember(other, longLived);
    clock.advance(1_000);
    // Expired, but nothing was remembered since: still there for the broker to judge (and not serve).
    assert.equal(memory.get(read.key), shortLived);
    memory.remember(write, token('new', clock.now()));
    assert.equal(memory.get(read.key), undefined);
    assert.equal(memory.get(other.key), longLived);
  });

  it("drops only the revoked client's tokens issued at or before the revocation", () => {
    const clock = new FakeClock();
    const memory = new MemoryTier(clock);
    const revokedAt = clock.now();
    const atRevocation = token('at', revokedAt);
    const afterRevocation = token('after', revokedAt + 1);
    const otherClient = token('other', revokedAt - 1);
    memory.remember(read, atRevocation);
    memory.remember(write, afterRevocation);
    memory.remember(other, otherClient);
    memory.dropRevoked('bwell', revokedAt);
    assert.equal(memory.get(read.key), undefined);
    assert.equal(memory.get(write.key), afterRevocation);
    assert.equal(memory.get(other.key), otherClient);
  });

  it('tells clients apart by name, not by how their keys begin', () => {
    const clock = new FakeClock();
    const memory = new MemoryTier(clock);
    const lookalike = { clientName: 'bwell-two', key: 'bwell-two#a' };
    const kept = token('kept', clock.now());
    memory.remember(lookalike, kept);
    memory.dropRevoked('bwell', clock.now());
    assert.equal(memory.get(lookalike.key), kept);
  });
});
