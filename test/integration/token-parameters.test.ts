import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { BrokerError } from '../../lambdas/core/errors.js';
import { cacheKeyOf } from '../../lambdas/core/token-parameters.js';
import { type BrokerHarness, resourceIndicators, startBrokerHarness } from '../support/broker-harness.js';
import { assertNoLeak } from '../support/logs.js';

let harness: BrokerHarness;
const issuedTokens: string[] = [];

async function tokenFor(client: string, body: Record<string, unknown> = {}) {
  const answer = await harness.http(client, { body: JSON.stringify(body) });
  assert.equal(answer.statusCode, 200, answer.body);
  assert.deepEqual(Object.keys(answer.json).sort(), ['access_token', 'expires_in', 'scope', 'token_type']);
  const token = answer.json.access_token as string;
  issuedTokens.push(token);
  return token;
}

/** The claims of a JWT access token, which the provider issues for a resource server. */
function claimsOf(token: string): Record<string, unknown> {
  const part = token.split('.')[1];
  assert.ok(part !== undefined, 'a JWT access token');
  return JSON.parse(Buffer.from(part, 'base64url').toString('utf8')) as Record<string, unknown>;
}

async function refusedWith(client: string, body: Record<string, unknown>, status: number, code: string) {
  const answer = await harness.http(client, { body: JSON.stringify(body) });
  assert.equal(answer.statusCode, status, answer.body);
  assert.deepEqual(Object.keys(answer.json).sort(), ['error', 'error_description']);
  assert.equal(answer.json.error, code);
  return answer.json.error_description as string;
}

function servedLines(client: string): Record<string, unknown>[] {
  return harness.output
    .text()
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>)
    .filter((line) => line.message === 'token served' && line.client === client);
}

describe('audience and resource parameters, against oidc-provider over TLS', () => {
  before(async () => {
    harness = await startBrokerHarness();
  });
  after(async () => {
    const logs = harness.output.text();
    await harness.close();
    assertNoLeak(logs, [...harness.secrets(), ...issuedTokens]);
  });

  it("sends the client's default resource and gets a token whose audience is that resource server", async () => {
    const before = harness.oidc.tokenRequests();
    const token = await tokenFor('resourced');
    assert.equal(harness.oidc.tokenRequests(), before + 1);
    assert.deepEqual(harness.oidc.lastTargetParameters(), { resource: resourceIndicators.r4 });
    assert.equal(claimsOf(token).aud, resourceIndicators.r4);
  });

  it('sends the resource a caller names, keeps one token per resource, and serves each from its own entry', async () => {
    const r4 = await tokenFor('resourced', { resource: resourceIndicators.r4 });
    const before = harness.oidc.tokenRequests();
    const dstu2 = await tokenFor('resourced', { resource: resourceIndicators.dstu2 });
    assert.equal(harness.oidc.tokenRequests(), before + 1);
    assert.deepEqual(harness.oidc.lastTargetParameters(), { resource: resourceIndicators.dstu2 });
    assert.equal(claimsOf(dstu2).aud, resourceIndicators.dstu2);
    assert.notEqual(dstu2, r4);

    // Both from memory, each for its own resource; the table holds both under their own keys.
    assert.equal(await tokenFor('resourced', { resource: resourceIndicators.dstu2 }), dstu2);
    assert.equal(await tokenFor('resourced'), r4);
    assert.equal(harness.oidc.tokenRequests(), before + 1);
    const read = ['system/*.read'];
    assert.ok(await harness.storedItem(cacheKeyOf('resourced', read, { resource: resourceIndicators.dstu2 })));
    assert.ok(await harness.storedItem(cacheKeyOf('resourced', read, { resource: resourceIndicators.r4 })));
    assert.equal(await harness.storedItem(cacheKeyOf('resourced', read)), undefined);
  });

  it('finds a token for a resource in the table from a fresh container', async () => {
    const first = await tokenFor('resourced', { scope: 'system/*.write', resource: resourceIndicators.dstu2 });
    harness.restartContainer();
    const before = harness.oidc.tokenRequests();
    assert.equal(await tokenFor('resourced', { scope: 'system/*.write', resource: resourceIndicators.dstu2 }), first);
    assert.equal(harness.oidc.tokenRequests(), before);
  });

  it('refuses a resource or audience the client does not list with 400 invalid_target, calling no one', async () => {
    const before = harness.oidc.tokenRequests();
    const description = await refusedWith(
      'resourced',
      { resource: 'https://attacker.example/' },
      400,
      'invalid_target',
    );
    assert.doesNotMatch(description, /attacker/);
    await refusedWith('resourced', { audience: 'https://api.test/' }, 400, 'invalid_target');
    await refusedWith('bwell', { resource: resourceIndicators.r4 }, 400, 'invalid_target');
    await refusedWith('audienced', { audience: 'https://api.test/x' }, 400, 'invalid_target');
    await refusedWith('resourced', { resource: 42 }, 400, 'invalid_request');
    await refusedWith('resourced', { resources: [resourceIndicators.r4] }, 400, 'invalid_request');
    assert.equal(harness.oidc.tokenRequests(), before);
  });

  it('sends an Auth0 audience only when the caller names one the client lists, one token per audience', async () => {
    await tokenFor('audienced');
    assert.deepEqual(harness.oidc.lastTargetParameters(), {});
    const before = harness.oidc.tokenRequests();
    const api = await tokenFor('audienced', { audience: 'https://api.test/' });
    assert.deepEqual(harness.oidc.lastTargetParameters(), { audience: 'https://api.test/' });
    const billing = await tokenFor('audienced', { audience: 'https://billing.test/' });
    assert.deepEqual(harness.oidc.lastTargetParameters(), { audience: 'https://billing.test/' });
    assert.notEqual(api, billing);
    assert.equal(harness.oidc.tokenRequests(), before + 2);
    assert.equal(await tokenFor('audienced', { audience: 'https://api.test/' }), api);
    assert.equal(harness.oidc.tokenRequests(), before + 2);
  });

  it('takes the same fields by direct invoke, and finds the token the HTTP path stored', async () => {
    const before = harness.oidc.tokenRequests();
    const event = { client: 'resourced', resource: resourceIndicators.dstu2 };
    const answer = (await harness.invokeOther(event, 'resourced')) as unknown as Record<string, unknown>;
    assert.equal(claimsOf(answer.access_token as string).aud, resourceIndicators.dstu2);
    // Fetched over HTTP by an earlier case: a fresh container finds it in the table.
    assert.equal(harness.oidc.tokenRequests(), before);
    await assert.rejects(
      harness.invokeOther({ client: 'audienced', audience: 'https://attacker.example/' }, 'audienced'),
      (error: unknown) => error instanceof BrokerError && error.code === 'invalid_target',
    );
    await assert.rejects(
      harness.invokeOther({ client: 'audienced', audience: ['https://api.test/'] }, 'audienced'),
      (error: unknown) => error instanceof BrokerError && error.code === 'invalid_request',
    );
    assert.equal(harness.oidc.tokenRequests(), before);
  });

  it('passes on as upstream_error a resource the client lists but the provider does not know', async () => {
    await harness.withExtraClient(
      'misconfigured',
      { secretName: 'token-broker/bwell', scopes: ['system/*.read'], resources: ['https://unknown.test/'] },
      async (http) => {
        const answer = await http('misconfigured', { body: JSON.stringify({ resource: 'https://unknown.test/' }) });
        assert.equal(answer.statusCode, 502, answer.body);
        assert.equal(answer.json.error, 'upstream_error');
        assert.match(answer.json.error_description as string, /invalid_target/);
      },
    );
  });

  it('names the audience and resource sent in the audit line', () => {
    const lines = servedLines('resourced');
    assert.ok(lines.some((line) => line.resource === resourceIndicators.dstu2));
    assert.ok(lines.some((line) => line.resource === resourceIndicators.r4));
    assert.ok(servedLines('audienced').some((line) => line.audience === 'https://billing.test/'));
    assert.ok(servedLines('audienced').some((line) => line.audience === undefined));
  });
});
