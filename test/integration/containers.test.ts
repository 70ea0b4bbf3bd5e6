/**
 * Several Lambda containers (separate processes, see test/support/containers.ts) against the same real local
 * parts: dynalite, the Secrets Manager stand-in and oidc-provider over TLS.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { LocalSecretClient } from '../../lambdas/local/oidc-server.js';
import { type ContainerRun, runContainers } from '../support/containers.js';
import { type LocalParts, startLocalParts } from '../support/local-parts.js';
import { assertNoLeak } from '../support/logs.js';

const tableName = 'token-broker-containers-test';
const secretName = 'token-broker/containers';
const count = 4;
const requestsEach = 25;

const oidcClient: LocalSecretClient = {
  clientId: 'containers-id',
  clientSecret: randomBytes(24).toString('base64url'),
  authMethod: 'client_secret_post',
  scopes: ['system/*.read'],
};

let parts: LocalParts;

describe(`${count} containers × ${requestsEach} concurrent requests for one cold key`, () => {
  let runs: ContainerRun[];
  let tokenRequests: number;
  let secretReads: number;

  before(async () => {
    parts = await startLocalParts({ tableName, secretName, clientName: 'cold-burst', client: oidcClient });
    const tokenRequestsBefore = parts.oidc.tokenRequests();
    const secretReadsBefore = parts.secretsManager.getSecretValueCalls();
    runs = await runContainers({ count, requestsEach, client: 'cold-burst', env: parts.env });
    tokenRequests = parts.oidc.tokenRequests() - tokenRequestsBefore;
    secretReads = parts.secretsManager.getSecretValueCalls() - secretReadsBefore;
  });
  after(async () => {
    await parts?.close();
  });

  const summary = () =>
    JSON.stringify({
      tokenRequests,
      secretReads,
      containers: runs.map((run) => ({ tokens: run.tokens.length, cache: run.cache, elapsedMs: run.elapsedMs })),
    });

  it('answers every request with 200 and one token per container; every fetched token is served', (t) => {
    // Recorded in the report: how many token requests (and secret reads) the burst cost.
    t.diagnostic(summary());
    assert.equal(runs.length, count);
    for (const run of runs) {
      assert.deepEqual(run.statuses, { 200: requestsEach }, summary());
      assert.equal(run.requests.length, requestsEach);
      // Single flight within a container: its concurrent callers share one load.
      assert.equal(run.tokens.length, 1, summary());
      assert.equal(
        Object.values(run.cache).reduce((sum, n) => sum + n, 0),
        requestsEach,
        'every answer names its cache outcome',
      );
    }
    const distinct = new Set(runs.flatMap((run) => run.tokens));
    assert.ok(tokenRequests >= 1 && tokenRequests <= count, summary());
    assert.equal(distinct.size, tokenRequests, summary());
    assert.ok(
      runs.some((run) => (run.cache.fetched ?? 0) > 0),
      summary(),
    );
  });

  it('asks the identity provider once across all containers, which all serve that one token', () => {
    assert.equal(tokenRequests, 1, summary());
    assert.equal(new Set(runs.flatMap((run) => run.tokens)).size, 1, summary());
  });

  it("keeps the client secret and the tokens out of every container's logs", () => {
    const logs = runs.map((run) => run.stderr).join('\n');
    assert.match(logs, /token served/);
    assertNoLeak(logs, [oidcClient.clientSecret, ...runs.flatMap((run) => run.tokens)]);
  });
});
