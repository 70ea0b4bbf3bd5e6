/**
 * Issue #10: ten Lambda containers (brokers built by the composition root, each with its own memory and SDK
 * clients) share one dynalite table and one identity provider, reached through the real OAuthTokenEndpoint
 * over TLS. The provider is scripted (test/support/scripted-idp.ts) so that it can hold its answer until every
 * container is waiting on the lease, answer slower than the lease, or grant a scope of the test's choosing.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { DynamoDBClient, GetItemCommand, PutItemCommand } from '@aws-sdk/client-dynamodb';
import { DynamoDbTokenCache, revocationMarkerKey } from '../../lambdas/adapters/dynamodb-cache.js';
import { partitionKey } from '../../lambdas/adapters/dynamodb-schema.js';
import type { TokenBroker, TokenResult } from '../../lambdas/core/broker.js';
import { BrokerError } from '../../lambdas/core/errors.js';
import { createBrokerFromEnvironment } from '../../lambdas/entry/compose.js';
import { environmentVariables } from '../../lambdas/entry/environment.js';
import { ShiftedClock } from '../support/broker-harness.js';
import { CountingMetrics, deferred, FixedSecretSource, RecordingLogger } from '../support/fakes.js';
import { type LocalStores, setEnvironment, startLocalStores } from '../support/local-parts.js';
import { assertNoLeak } from '../support/logs.js';
import { type ScriptedAnswer, type ScriptedIdp, startScriptedIdp } from '../support/scripted-idp.js';

const tableName = 'token-broker-stampede';
const containerCount = 10;
const readScope = 'system/*.read';
const writeScope = 'system/*.write';
const clientSecret = randomBytes(24).toString('base64url');
const randomToken = () => `at-${randomBytes(24).toString('base64url')}`;

let idp: ScriptedIdp;
let stores: LocalStores;
const logger = new RecordingLogger();
const secrets = new FixedSecretSource({ clientId: 'stampede-id', clientSecret });
/** Every token the provider issued, for the leak check. */
const issued: string[] = [];

function bearer(extra: Record<string, unknown> = {}): ScriptedAnswer {
  const token = randomToken();
  issued.push(token);
  return { status: 200, body: { access_token: token, token_type: 'Bearer', expires_in: 3600, ...extra } };
}

interface Container {
  broker: TokenBroker;
  clock: ShiftedClock;
}

function container(metrics: CountingMetrics): Container {
  const clock = new ShiftedClock();
  return { broker: createBrokerFromEnvironment(process.env, { logger, clock, metrics, secrets }), clock };
}

/** Polls (real time) until `condition` holds, for at most `limitMs`: a script never hangs the test. */
async function until(condition: () => boolean, limitMs = 20_000): Promise<void> {
  const giveUpAt = Date.now() + limitMs;
  while (!condition() && Date.now() < giveUpAt) await delay(10);
}

function codesOf(outcomes: PromiseSettledResult<TokenResult>[]): string[] {
  return outcomes
    .map((outcome) =>
      outcome.status === 'fulfilled' ? 'served' : outcome.reason instanceof BrokerError ? outcome.reason.code : 'crash',
    )
    .sort();
}

describe(`${containerCount} containers sharing dynalite, against a scripted identity provider`, () => {
  before(async () => {
    idp = await startScriptedIdp(async () => bearer());
    // The client secrets are fixed; the sealing key is read through the SDK from the stand-in, as deployed.
    stores = await startLocalStores({ tableName });
    setEnvironment(stores.env);
    // One secret name per client, as the registry requires; the fixed secret source answers every name alike.
    const client = (name: string, extra: Record<string, unknown> = {}) => ({
      wellKnownUrl: idp.wellKnownUrl,
      secretName: `token-broker/${name}`,
      scopes: [readScope, writeScope],
      defaultScope: readScope,
      authMethod: 'client_secret_post',
      ...extra,
    });
    // The provider names its token endpoint on another host than its issuer, as Cognito does.
    process.env[environmentVariables.tokenEndpointHosts] = new URL(idp.tokenEndpoint).host;
    // The default upstream budget (5 s) and with it the default lease (7 s).
    delete process.env[environmentVariables.upstreamBudgetMs];
    process.env[environmentVariables.clients] = JSON.stringify({
      'fails-fast': client('fails-fast'),
      slow: client('slow'),
      overreach: client('overreach', { defaultScope: undefined }),
      revoked: client('revoked'),
      raced: client('raced'),
      marked: client('marked'),
    });
  });
  after(async () => {
    await idp?.close();
    await stores?.close();
    assertNoLeak(JSON.stringify(logger.lines), [clientSecret, stores.sealingKey, ...issued]);
  });

  it('lets one holder reach a provider that fails fast; the nine waiting containers answer 503 without calling', async () => {
    const metrics = new CountingMetrics();
    const containers = Array.from({ length: containerCount }, () => container(metrics));
    // The provider fails at once, but only after every other container is waiting on the holder's lease.
    idp.answerWith(async () => {
      await until(() => metrics.of('LeaseWaits') >= containerCount - 1);
      return { status: 503, body: { error: 'temporarily_unavailable' } };
    });
    const reachedBefore = idp.tokenRequests().length;
    const outcomes = await Promise.allSettled(
      containers.map(({ broker }) => broker.getToken({ client: 'fails-fast' })),
    );
    const reached = idp.tokenRequests().length - reachedBefore;
    assert.equal(metrics.of('TokenEndpointCalls'), 1, 'one container called the token endpoint');
    assert.ok(reached >= 1 && reached <= 3, `the holder's attempts alone reached the provider (${reached})`);
    assert.deepEqual(codesOf(outcomes), [...Array(containerCount - 1).fill('unavailable'), 'upstream_error'].sort());
  });

  it('lets one holder reach a provider slower than the lease; its attempts end within its budget', async () => {
    const metrics = new CountingMetrics();
    const containers = Array.from({ length: containerCount }, () => container(metrics));
    // 8 s: longer than the 5 s upstream budget and the 7 s lease.
    idp.answerWith(async () => {
      await delay(8_000, undefined, { ref: false });
      return bearer();
    });
    const reachedBefore = idp.tokenRequests().length;
    const outcomes = await Promise.allSettled(containers.map(({ broker }) => broker.getToken({ client: 'slow' })));
    const reached = idp.tokenRequests().length - reachedBefore;
    assert.equal(metrics.of('TokenEndpointCalls'), 1, 'one container called the token endpoint');
    assert.ok(reached >= 1 && reached <= 3, `the holder's attempts alone reached the provider (${reached})`);
    assert.deepEqual(codesOf(outcomes), [...Array(containerCount - 1).fill('unavailable'), 'upstream_timeout'].sort());
  });

  it('refuses a token granted a scope outside the client configuration: 502, not stored, asked for again', async () => {
    const metrics = new CountingMetrics();
    const { broker } = container(metrics);
    idp.answerWith(async () => bearer({ scope: `${readScope} ${writeScope} system/*.admin` }));
    const reachedBefore = idp.tokenRequests().length;
    await assert.rejects(broker.getToken({ client: 'overreach' }), (error: unknown) => {
      assert.ok(error instanceof BrokerError && error.code === 'upstream_error', String(error));
      assert.ok(!error.message.includes('admin'), error.message);
      return true;
    });
    // A client without a defaultScope asks for every scope it is allowed, by name.
    assert.equal(idp.tokenRequests().at(-1)?.form.get('scope'), `${readScope} ${writeScope}`);
    const table = new DynamoDbTokenCache(new DynamoDBClient({}), tableName);
    assert.equal(await table.get(`overreach#${readScope} ${writeScope}`), undefined, 'nothing in the table');
    await assert.rejects(broker.getToken({ client: 'overreach' }), BrokerError);
    assert.equal(idp.tokenRequests().length, reachedBefore + 2, 'nothing in memory either: asked again');
  });

  it('does not serve a token another container revoked once the revocation check interval has passed', async () => {
    const metrics = new CountingMetrics();
    idp.answerWith(async () => bearer());
    const idle = container(metrics);
    const admin = container(metrics);
    const revoked = await idle.broker.getToken({ client: 'revoked' });
    assert.equal((await idle.broker.getToken({ client: 'revoked' })).cache, 'memory');
    await admin.broker.invalidate('revoked');
    idle.clock.advance(31_000);
    const answer = await idle.broker.getToken({ client: 'revoked' });
    assert.notEqual(answer.response.access_token, revoked.response.access_token);
    assert.equal(answer.cache, 'fetched');
  });

  it('refuses to store a renewal begun before another container invalidated; a fresh container gets a miss', async () => {
    const metrics = new CountingMetrics();
    const renewing = container(metrics);
    const admin = container(metrics);
    const release = deferred<void>();
    const reachedBefore = idp.tokenRequests().length;
    idp.answerWith(async () => {
      await release.promise;
      return bearer();
    });
    const renewal = renewing.broker.getToken({ client: 'raced' });
    await until(() => idp.tokenRequests().length > reachedBefore);
    // The provider has the request; the invalidation lands before its answer does.
    await delay(5);
    await admin.broker.invalidate('raced');
    idp.answerWith(async () => bearer());
    release.resolve();
    const raced = await renewal;
    assert.equal(raced.cache, 'fetched');
    assert.equal(
      await storedItem(`raced#${readScope}`),
      undefined,
      'the token issued before the invalidation is not in the table',
    );
    const fresh = await container(metrics).broker.getToken({ client: 'raced' });
    assert.equal(fresh.cache, 'fetched');
    assert.notEqual(fresh.response.access_token, raced.response.access_token);
  });

  it('makes a fresh container check the revocation marker before serving a token from the table', async () => {
    const metrics = new CountingMetrics();
    idp.answerWith(async () => bearer());
    const first = await container(metrics).broker.getToken({ client: 'marked' });
    assert.notEqual(await storedItem(`marked#${readScope}`), undefined);
    // An invalidation's marker, written before its deletions reach the token item.
    await delay(5);
    const raw = new DynamoDBClient({});
    await raw.send(
      new PutItemCommand({
        TableName: tableName,
        Item: { [partitionKey]: { S: revocationMarkerKey('marked') }, revokedAt: { N: String(Date.now()) } },
      }),
    );
    raw.destroy();
    const fresh = await container(metrics).broker.getToken({ client: 'marked' });
    assert.equal(fresh.cache, 'fetched');
    assert.notEqual(fresh.response.access_token, first.response.access_token);
  });
});

async function storedItem(cacheKey: string) {
  const raw = new DynamoDBClient({});
  const output = await raw.send(
    new GetItemCommand({ TableName: tableName, Key: { [partitionKey]: { S: cacheKey } }, ConsistentRead: true }),
  );
  raw.destroy();
  return output.Item;
}
