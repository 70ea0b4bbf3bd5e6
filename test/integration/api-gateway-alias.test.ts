import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { APIGatewayProxyResult } from 'aws-lambda';
import { apiGatewayAliasName } from '../../lambdas/entry/invoke.js';
import { type BrokerHarness, httpEvent, startBrokerHarness } from '../support/broker-harness.js';
import { assertNoLeak } from '../support/logs.js';

/*
 * Issue 10, item 1: an event shaped like API Gateway's carries the caller identity the broker trusts, so it
 * is served only through the alias API Gateway invokes. Anyone allowed to invoke the function some other way
 * (unqualified, a version, a client alias) could otherwise name any caller and fetch or drop any client.
 */

/** Every way in that is not API Gateway's: unqualified, $LATEST, a version, a client and an admin alias. */
const notApiGateway = [undefined, '$LATEST', '7', 'basic', 'bwell', 'bwell_admin'];
const forger = 'arn:aws:iam::999999999999:role/forger';

let harness: BrokerHarness;
const issuedTokens: string[] = [];

function isAccessDenied(error: unknown): boolean {
  return error instanceof Error && error.name === 'access_denied';
}

/** What a forged event would have to touch to serve or drop a token. */
function upstreamCalls() {
  return {
    tokenEndpoint: harness.oidc.tokenRequests(),
    secretsManager: harness.secretsManager.getSecretValueCalls(),
  };
}

describe('API Gateway events are served through the API Gateway alias only', () => {
  before(async () => {
    harness = await startBrokerHarness();
  });
  after(async () => {
    const logs = harness.output.text();
    await harness.close();
    assertNoLeak(logs, [...harness.secrets(), ...issuedTokens]);
  });

  it('gives no token for a forged API Gateway event invoked unqualified, through a version or a client alias', async () => {
    const forged = httpEvent('bwell', { caller: forger, body: '{"scope":"system/*.write"}' });
    const calls = upstreamCalls();
    for (const qualifier of notApiGateway) {
      await assert.rejects(harness.invoke(forged, qualifier), isAccessDenied, `through ${qualifier ?? 'no qualifier'}`);
    }
    assert.deepEqual(upstreamCalls(), calls, 'neither Secrets Manager nor the token endpoint was asked');
    assert.equal(await harness.storedItem('bwell#system/*.write'), undefined, 'nothing was cached');
  });

  it('logs each forged event as refused, with the ARN it was invoked through', async () => {
    const forged = httpEvent('basic', { caller: forger });
    await assert.rejects(harness.invoke(forged, '7'), isAccessDenied);
    const refused = harness.output
      .text()
      .split('\n')
      .filter((line) => line.includes('"token request refused"'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    const last = refused.at(-1);
    assert.equal(last?.errorCode, 'access_denied');
    assert.match(String(last?.invokedAs), /:function:token-broker:7$/);
    assert.equal(last?.caller, undefined, 'the identity in a forged event is never logged as the caller');
  });

  it('invalidates nothing for a forged DELETE invoked unqualified, through a version or a client alias', async () => {
    const cached = await harness.http('basic');
    assert.equal(cached.statusCode, 200, cached.body);
    issuedTokens.push(cached.json.access_token as string);
    const forged = httpEvent('basic', { method: 'DELETE', caller: forger });
    for (const qualifier of notApiGateway) {
      await assert.rejects(harness.invoke(forged, qualifier), isAccessDenied, `through ${qualifier ?? 'no qualifier'}`);
    }
    assert.notEqual(await harness.storedItem('basic#system/*.read'), undefined, 'the table still holds the token');
    const calls = upstreamCalls();
    const again = await harness.http('basic');
    assert.equal(again.json.access_token, cached.json.access_token, 'this container still serves it from memory');
    assert.deepEqual(upstreamCalls(), calls);
  });

  it('serves the same events through the API Gateway alias, and only them', async () => {
    const calls = harness.oidc.tokenRequests();
    const fetch = httpEvent('discovered', { body: '{"scope":"system/*.read"}' });
    const fetched = (await harness.invoke(fetch, apiGatewayAliasName)) as APIGatewayProxyResult;
    assert.equal(fetched.statusCode, 200, fetched.body);
    issuedTokens.push(JSON.parse(fetched.body).access_token);
    assert.equal(harness.oidc.tokenRequests(), calls + 1);

    assert.notEqual(await harness.storedItem('discovered#system/*.read'), undefined);
    const dropped = (await harness.invoke(
      httpEvent('discovered', { method: 'DELETE' }),
      apiGatewayAliasName,
    )) as APIGatewayProxyResult;
    assert.equal(dropped.statusCode, 200, dropped.body);
    assert.equal(await harness.storedItem('discovered#system/*.read'), undefined);

    for (const direct of [{ client: 'discovered' }, { action: 'invalidate', client: 'discovered' }, {}, null]) {
      await assert.rejects(harness.invoke(direct, apiGatewayAliasName), isAccessDenied, JSON.stringify(direct));
    }
    assert.equal(harness.oidc.tokenRequests(), calls + 1, 'the direct events fetched nothing');
  });
});
