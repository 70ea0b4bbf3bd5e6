import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { CachedToken } from '../../lambdas/core/ports.js';
import {
  RenewalPolicy,
  renewalBridgeMaxSeconds,
  renewalLeadMs,
  servableWindowMs,
} from '../../lambdas/core/renewal-policy.js';

const defaults = { refreshWindowSeconds: 60, refreshAheadFraction: 0.2, refreshAheadMaxMs: 300_000 };
const issuedAt = Date.UTC(2026, 10, 29, 12, 0, 0);

function tokenFor(lifetimeSeconds: number): CachedToken {
  return { accessToken: 't', tokenType: 'Bearer', scope: 'a', issuedAt, expiresAt: issuedAt + lifetimeSeconds * 1000 };
}

describe('renewal policy', () => {
  it('stops serving a token the refresh window before it expires', () => {
    assert.equal(servableWindowMs(3_600_000, 60), 60_000);
  });

  it('scales the window to a quarter of the lifetime for a token that lives less than four windows', () => {
    assert.equal(servableWindowMs(120_000, 60), 30_000);
    assert.equal(servableWindowMs(240_000, 60), 60_000);
  });

  it('renews a 300 s token 90 s before expiry: the window and the 30 s bridge', () => {
    assert.equal(renewalBridgeMaxSeconds, 30);
    assert.equal(renewalLeadMs(300_000, defaults), 90_000);
  });

  it('renews a long-lived token its refresh-ahead share before expiry, at most refreshAheadMax', () => {
    assert.equal(renewalLeadMs(3_600_000, defaults), 300_000);
    assert.equal(renewalLeadMs(1_000_000, defaults), 200_000);
  });

  it('bridges a short-lived token by a tenth of its lifetime', () => {
    assert.equal(renewalLeadMs(100_000, defaults), 25_000 + 10_000);
  });

  it('renews at the window, with no bridge, when refresh ahead is off', () => {
    assert.equal(renewalLeadMs(300_000, { ...defaults, refreshAheadFraction: 0 }), 60_000);
  });

  it('serves a token while at least the window remains, and not once less does', () => {
    const policy = new RenewalPolicy(defaults);
    const token = tokenFor(3600);
    assert.equal(policy.isServable(token, token.expiresAt - 60_000), true);
    assert.equal(policy.isServable(token, token.expiresAt - 59_999), false);
    assert.equal(policy.isServable(token, token.expiresAt), false);
  });

  it('never serves an expired token, even one issued for no time at all', () => {
    const policy = new RenewalPolicy(defaults);
    const token = tokenFor(0);
    assert.equal(policy.isServable(token, issuedAt), false);
  });

  it('holds a token due for renewal once less than the renewal lead remains', () => {
    const policy = new RenewalPolicy(defaults);
    const token = tokenFor(300);
    assert.equal(policy.isDue(token, token.expiresAt - 90_000), false);
    assert.equal(policy.isDue(token, token.expiresAt - 89_999), true);
    assert.equal(policy.isServable(token, token.expiresAt - 89_999), true, 'still served while it renews');
  });
});
