import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { BrokerError } from '../../lambdas/core/errors.js';
import { forceRefreshIntervalSeconds } from '../../lambdas/core/freshness.js';
import { type BrokerHarness, type HttpOptions, startBrokerHarness } from '../support/broker-harness.js';
import { assertNoLeak } from '../support/logs.js';

let harness: BrokerHarness;
const issuedTokens: string[] = [];
const client = 'recovering';

type Http = BrokerHarness['http'];

async function tokenThrough(http: Http, body: Record<string, unknown> = {}) {
  const options: HttpOptions = { body: JSON.stringify(body) };
  const answer = await http(client, options);
  assert.equal(answer.statusCode, 200, answer.body);
  assert.deepEqual(Object.keys(answer.json).sort(), ['access_token', 'expires_in', 'scope', 'token_type']);
  const token = answer.json.access_token as string;
  issuedTokens.push(token);
  return { token, expiresIn: answer.json.expires_in as number };
}

function servedLines(): Record<string, unknown>[] {
  return harness.output
    .text()
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>)
    .filter((line) => line.message === 'token served' && line.client === client);
}

describe('caller-driven recovery (minTtl, forceRefresh), against oidc-provider over TLS', () => {
  before(async () => {
    harness = await startBrokerHarness();
  });
  after(async () => {
    const logs = harness.output.text();
    await harness.close();
    assertNoLeak(logs, [...harness.secrets(), ...issuedTokens]);
  });

  it('refreshes once for the fleet: a container forcing after another gets its new token from the table', async () => {
    const containers = [harness.otherContainer(), harness.otherContainer(), harness.otherContainer()];
    const start = harness.oidc.tokenRequests();
    const refused = (await tokenThrough(harness.http)).token;
    for (const container of containers) assert.equal((await tokenThrough(container.http)).token, refused);
    assert.equal(harness.oidc.tokenRequests(), start + 1);

    harness.clock.advance(60_000);
    const renewed = (await tokenThrough(harness.http, { forceRefresh: true })).token;
    assert.notEqual(renewed, refused);
    assert.equal(harness.oidc.tokenRequests(), start + 2);
    // Each other container still holds the refused token in memory; forcing finds the new one in the table.
    for (const container of containers) {
      assert.equal((await tokenThrough(container.http, { forceRefresh: true })).token, renewed);
    }
    assert.equal(harness.oidc.tokenRequests(), start + 2);
    assert.equal((await tokenThrough(containers[0]?.http as Http)).token, renewed);
  });

  it('makes one call for containers forcing at once, and one more only after the interval', async () => {
    harness.clock.advance((forceRefreshIntervalSeconds + 1) * 1000);
    const containers = [harness.otherContainer(), harness.otherContainer(), harness.otherContainer()];
    const start = harness.oidc.tokenRequests();
    const answers = await Promise.all(
      [harness.http, ...containers.map((container) => container.http)].map((http) =>
        tokenThrough(http, { forceRefresh: true }),
      ),
    );
    assert.equal(harness.oidc.tokenRequests(), start + 1);
    assert.equal(new Set(answers.map((answer) => answer.token)).size, 1);

    harness.clock.advance((forceRefreshIntervalSeconds - 5) * 1000);
    await tokenThrough(harness.http, { forceRefresh: true });
    assert.equal(harness.oidc.tokenRequests(), start + 1, 'within the interval: the same token');
    harness.clock.advance(6_000);
    const later = await tokenThrough(harness.http, { forceRefresh: true });
    assert.equal(harness.oidc.tokenRequests(), start + 2);
    assert.ok(!answers.some((answer) => answer.token === later.token));
  });

  it('serves the cached token while it meets minTtl, and a new one once it does not', async () => {
    const current = await tokenThrough(harness.http);
    const start = harness.oidc.tokenRequests();
    const minTtl = 1000;
    harness.clock.advance((current.expiresIn - minTtl - 10) * 1000);
    const enough = await tokenThrough(harness.http, { minTtl });
    assert.equal(enough.token, current.token);
    assert.equal(harness.oidc.tokenRequests(), start);
    harness.clock.advance(20_000);
    const renewed = await tokenThrough(harness.http, { minTtl });
    assert.notEqual(renewed.token, current.token);
    assert.ok(renewed.expiresIn >= minTtl, `${renewed.expiresIn} s left`);
    assert.equal(harness.oidc.tokenRequests(), start + 1);
    // Asking more than the provider ever gives is met by a token in the first half of its life: no call per request.
    assert.equal((await tokenThrough(harness.http, { minTtl: 86_400 })).token, renewed.token);
    assert.equal(harness.oidc.tokenRequests(), start + 1);
  });

  it('takes minTtl and forceRefresh by direct invoke too', async () => {
    harness.clock.advance((forceRefreshIntervalSeconds + 1) * 1000);
    const other = harness.otherContainer();
    const start = harness.oidc.tokenRequests();
    const answer = (await other.invoke({ client, forceRefresh: true, minTtl: 60 }, client)) as unknown as Record<
      string,
      unknown
    >;
    issuedTokens.push(answer.access_token as string);
    assert.equal(harness.oidc.tokenRequests(), start + 1);
    assert.equal((await tokenThrough(harness.http, { forceRefresh: true })).token, answer.access_token);
    assert.equal(harness.oidc.tokenRequests(), start + 1);
  });

  it('refuses a minTtl or forceRefresh of the wrong kind with 400 invalid_request, calling no one', async () => {
    const start = harness.oidc.tokenRequests();
    for (const body of [
      { minTtl: '60' },
      { minTtl: -1 },
      { minTtl: 1.5 },
      { minTtl: 86_401 },
      { minTtl: null },
      { forceRefresh: 'true' },
      { forceRefresh: 1 },
    ]) {
      const answer = await harness.http(client, { body: JSON.stringify(body) });
      assert.equal(answer.statusCode, 400, answer.body);
      assert.deepEqual(Object.keys(answer.json).sort(), ['error', 'error_description']);
      assert.equal(answer.json.error, 'invalid_request', answer.body);
      assert.match(answer.json.error_description as string, /minTtl|forceRefresh/);
      await assert.rejects(
        harness.invoke({ client, ...body }, client),
        (error: unknown) => error instanceof BrokerError && error.code === 'invalid_request',
      );
    }
    assert.equal(harness.oidc.tokenRequests(), start);
  });

  it('names minTtl and forceRefresh in the audit line when a caller asked for them', () => {
    const lines = servedLines();
    assert.ok(lines.some((line) => line.forceRefresh === true && line.cache === 'refreshed'));
    assert.ok(lines.some((line) => line.forceRefresh === true && line.cache === 'table'));
    // Answered from memory too: a forced refresh within the interval of the last one.
    assert.ok(lines.some((line) => line.forceRefresh === true && line.cache === 'memory'));
    assert.ok(lines.some((line) => line.minTtl !== undefined && line.forceRefresh === undefined));
    assert.ok(lines.some((line) => line.minTtl === undefined && line.forceRefresh === undefined));
  });
});
