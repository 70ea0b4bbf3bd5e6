/**
 * Several Lambda containers (separate processes, see test/support/containers.ts) against the same real local
 * parts: dynalite, the Secrets Manager stand-in and oidc-provider over TLS.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { environmentVariables } from '../../lambdas/entry/environment.js';
import { createTokenTable, type LocalDynamo, startDynalite } from '../../lambdas/local/dynalite.js';
import { type LocalOidcServer, type LocalSecretClient, startOidcServer } from '../../lambdas/local/oidc-server.js';
import { type ContainerRun, runContainers } from '../support/containers.js';
import { assertNoLeak } from '../support/logs.js';
import { type SecretsManagerStandIn, startSecretsManagerStandIn } from '../support/secrets-manager.js';
import { loadTestTls } from '../support/tls.js';

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

let oidc: LocalOidcServer;
let dynamo: LocalDynamo;
let secretsManager: SecretsManagerStandIn;
let workerEnv: Record<string, string | undefined>;

async function startParts(): Promise<void> {
  const { key, cert } = loadTestTls();
  oidc = await startOidcServer({ clients: [oidcClient], tls: { key, cert } });
  dynamo = await startDynalite();
  await createTokenTable(dynamo.endpoint, tableName);
  secretsManager = await startSecretsManagerStandIn();
  secretsManager.putSecret(
    secretName,
    JSON.stringify({ client_id: oidcClient.clientId, client_secret: oidcClient.clientSecret }),
  );
  const client = {
    wellKnownUrl: oidc.wellKnownUrl,
    secretName,
    scopes: ['system/*.read'],
    defaultScope: 'system/*.read',
    authMethod: 'client_secret_post',
  };
  workerEnv = {
    AWS_ENDPOINT_URL_DYNAMODB: dynamo.endpoint,
    AWS_ENDPOINT_URL_SECRETS_MANAGER: secretsManager.endpoint,
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
    AWS_SESSION_TOKEN: undefined,
    AWS_REGION: 'us-east-1',
    [environmentVariables.tableName]: tableName,
    // A key per test, so that every run starts cold.
    [environmentVariables.clients]: JSON.stringify({ 'cold-burst': client }),
  };
}

describe(`${count} containers × ${requestsEach} concurrent requests for one cold key`, () => {
  let runs: ContainerRun[];
  let tokenRequests: number;
  let secretReads: number;

  before(async () => {
    await startParts();
    const tokenRequestsBefore = oidc.tokenRequests();
    const secretReadsBefore = secretsManager.getSecretValueCalls();
    runs = await runContainers({ count, requestsEach, client: 'cold-burst', env: workerEnv });
    tokenRequests = oidc.tokenRequests() - tokenRequestsBefore;
    secretReads = secretsManager.getSecretValueCalls() - secretReadsBefore;
  });
  after(async () => {
    await Promise.all([oidc?.close(), dynamo?.close(), secretsManager?.close()]);
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
