/**
 * Issue #16, item 1: which hosts may receive a client's credentials. The patterns of `tokenEndpointHosts` (per
 * client and for the deployment), how `*` matches, and which host is approved when.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  hostPatternProblem,
  isApprovedTokenEndpointHost,
  matchesHostPattern,
} from '../../lambdas/core/endpoint-hosts.js';

const cognitoPools = '*.auth.us-east-1.amazoncognito.com';

describe('token endpoint host patterns', () => {
  it('accepts exact hosts and wildcards of one label over at least three fixed labels', () => {
    for (const pattern of [
      'fhir.icanbwell.com',
      'localhost:9443',
      '127.0.0.1:8443',
      cognitoPools,
      '*.login.example.co.uk',
      '*.idp.example.com:8443',
    ]) {
      assert.equal(hostPatternProblem(pattern), undefined, pattern);
    }
  });

  it('refuses wildcards that cover a whole domain or a shared suffix, and wildcards anywhere but the first label', () => {
    for (const pattern of ['*.com', '*.amazoncognito.com', '*.example.com', '*.co.uk', '*.10.0.0.1']) {
      assert.match(
        hostPatternProblem(pattern) ?? '',
        /is too broad: a wildcard needs at least 3 fixed DNS labels/,
        pattern,
      );
    }
    for (const pattern of [
      '*',
      '*.',
      'auth.*.example.com',
      '**.auth.example.com',
      'a*.auth.example.com',
      '*.*.a.b.c',
    ]) {
      assert.match(hostPatternProblem(pattern) ?? '', /must be a lowercase DNS host name/, pattern);
    }
  });

  it('matches * with exactly one DNS label, and the port exactly', () => {
    assert.ok(matchesHostPattern('pool-1.auth.us-east-1.amazoncognito.com', cognitoPools));
    for (const host of [
      'auth.us-east-1.amazoncognito.com',
      'a.b.auth.us-east-1.amazoncognito.com',
      'pool.auth.us-west-2.amazoncognito.com',
      'pool.auth.us-east-1.amazoncognito.com:8443',
      'poolauth.us-east-1.amazoncognito.com',
      'pool.auth.us-east-1.amazoncognito.com.evil.example',
    ]) {
      assert.equal(matchesHostPattern(host, cognitoPools), false, host);
    }
    assert.ok(matchesHostPattern('pool.idp.example.com:8443', '*.idp.example.com:8443'));
    assert.equal(matchesHostPattern('pool.idp.example.com', '*.idp.example.com:8443'), false);
    assert.ok(matchesHostPattern('fhir.icanbwell.com', 'fhir.icanbwell.com'));
    assert.equal(matchesHostPattern('x.fhir.icanbwell.com', 'fhir.icanbwell.com'), false);
  });

  it("approves the issuer's host or the deployment's hosts, unless the client pins its own", () => {
    const issuerHost = 'cognito-idp.us-east-1.amazonaws.com';
    const unpinned = { clientHosts: undefined, issuerHost, deploymentHosts: [cognitoPools] };
    assert.ok(isApprovedTokenEndpointHost(issuerHost, unpinned));
    assert.ok(isApprovedTokenEndpointHost('pool.auth.us-east-1.amazoncognito.com', unpinned));
    assert.equal(isApprovedTokenEndpointHost('fhir.icanbwell.com', unpinned), false);
    assert.equal(
      isApprovedTokenEndpointHost('pool.auth.us-east-1.amazoncognito.com', { ...unpinned, deploymentHosts: [] }),
      false,
    );

    const pinned = { ...unpinned, clientHosts: ['fhir.icanbwell.com'] };
    assert.ok(isApprovedTokenEndpointHost('fhir.icanbwell.com', pinned));
    assert.equal(isApprovedTokenEndpointHost(issuerHost, pinned), false, 'a pin replaces the issuer host');
    assert.equal(
      isApprovedTokenEndpointHost('pool.auth.us-east-1.amazoncognito.com', pinned),
      false,
      "a pin replaces the deployment's hosts",
    );
  });
});
