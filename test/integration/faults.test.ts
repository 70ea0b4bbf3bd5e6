/**
 * Issue #4: the broker under upstream, discovery, Secrets Manager and DynamoDB faults, against the real local
 * servers (oidc-provider behind the fault proxy, dynalite, the Secrets Manager stand-in). Every test captures
 * what the broker logs and checks that no secret and no token appears in it.
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { DynamoDBClient, GetItemCommand } from '@aws-sdk/client-dynamodb';
import { partitionKey } from '../../lambdas/adapters/dynamodb-schema.js';
import { maxExpiresInSeconds } from '../../lambdas/adapters/oauth-token-endpoint.js';
import { firstCooldownSeconds } from '../../lambdas/core/cooldown.js';
import { type Fault, json, rewrite } from '../support/fault-proxy.js';
import {
  type Answer,
  type FaultsHarness,
  randomValue,
  readScope,
  startFaultsHarness,
  tableName,
  writeScope,
} from '../support/faults-harness.js';
import { assertNoLeak, type CapturedOutput, captureOutput } from '../support/logs.js';

let harness: FaultsHarness;

interface Logs {
  text(): string;
  /** The JSON log lines (Powertools writes one object per line). */
  lines(): Record<string, unknown>[];
}

/** A test whose output is captured; once it ends, the output must hold no secret and no token. */
function faultTest(name: string, body: (logs: Logs) => Promise<void>, options: { todo?: string } = {}) {
  it(name, options, async () => {
    const capture: CapturedOutput = captureOutput();
    const logs: Logs = {
      text: () => capture.text(),
      lines: () =>
        capture
          .text()
          .split('\n')
          .flatMap((line) => {
            try {
              const parsed: unknown = JSON.parse(line);
              return typeof parsed === 'object' && parsed !== null ? [parsed as Record<string, unknown>] : [];
            } catch {
              return [];
            }
          }),
    };
    try {
      await body(logs);
    } finally {
      capture.restore();
    }
    assert.ok(logs.lines().length > 0, 'the broker logged something');
    assertNoLeak(logs.text(), harness.mustNotLeak());
  });
}

function ok(answer: Answer): Answer {
  assert.equal(answer.statusCode, 200, answer.body);
  assert.equal(answer.json.token_type, 'Bearer');
  assert.equal(typeof answer.json.access_token, 'string');
  return answer;
}

/** The OAuth-style error body, and nothing else; returns the description. */
function refused(answer: Answer, status: number, code: string): string {
  assert.equal(answer.statusCode, status, answer.body);
  assert.equal(answer.json.error, code);
  assert.deepEqual(Object.keys(answer.json).sort(), ['error', 'error_description']);
  return answer.json.error_description as string;
}

async function timed<T>(work: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = performance.now();
  const value = await work();
  return { value, ms: performance.now() - started };
}

const hour = 3600_000;

describe('the broker under faults (oidc-provider behind the fault proxy, dynalite, Secrets Manager)', () => {
  before(async () => {
    harness = await startFaultsHarness();
  });
  afterEach(() => {
    harness.proxy.reset();
    harness.secretsManager.failNext(0);
  });
  after(async () => {
    await harness.close();
  });

  describe('token endpoint failures', () => {
    faultTest('retries a 500 and answers once with the token of the second attempt', async () => {
      const container = harness.newContainer();
      const client = harness.coldClient();
      const upstream = harness.upstreamTokenRequests();
      harness.proxy.next('token', { status: 500, body: { error: 'server_error' } });
      ok(await container.http(client));
      assert.equal(harness.proxy.received('token'), 2, 'two token requests reached the proxy');
      assert.equal(harness.proxy.forwarded('token'), 1, 'the second one was forwarded');
      assert.equal(harness.upstreamTokenRequests(), upstream + 1);
      assert.equal(container.metrics.of('TokenEndpointCalls'), 1, 'one broker-level call, retried inside');
    });

    faultTest('retries a 429 after the Retry-After the server asked for, when it fits the budget', async () => {
      const container = harness.newContainer();
      const client = harness.coldClient();
      // Prime discovery, so that only the token request is timed.
      ok(await container.http(client));
      harness.proxy.reset();
      harness.proxy.next('token', { status: 429, body: { error: 'slow_down' }, headers: { 'retry-after': '1' } });
      const pauses = container.clock.sleeps.length;
      const { value, ms } = await timed(() => container.http(client, writeScope));
      ok(value);
      assert.equal(harness.proxy.received('token'), 2);
      assert.equal(harness.proxy.forwarded('token'), 1);
      assert.ok(ms >= 950, `waited the Retry-After second (took ${Math.round(ms)} ms)`);
      assert.deepEqual(container.clock.sleeps.slice(pauses), [1000], 'one pause, exactly the Retry-After');
    });

    faultTest('retries a 429 with Retry-After: 0 at once', async () => {
      const container = harness.newContainer();
      harness.proxy.next('token', { status: 429, headers: { 'retry-after': '0' } });
      ok(await container.http(harness.coldClient()));
      assert.equal(harness.proxy.received('token'), 2);
    });

    faultTest('does not retry a 429 whose Retry-After exceeds the budget: 502 upstream_error', async () => {
      const container = harness.newContainer();
      harness.proxy.next('token', { status: 429, body: { error: 'slow_down' }, headers: { 'retry-after': '30' } });
      refused(await container.http(harness.coldClient()), 502, 'upstream_error');
      assert.equal(harness.proxy.received('token'), 1);
      assert.deepEqual(container.clock.sleeps, [], 'answered without pausing for the Retry-After');
    });

    faultTest('does not retry a 400: exactly one token request, 502 upstream_error', async () => {
      const container = harness.newContainer();
      harness.proxy.next('token', { status: 400, body: { error: 'invalid_request' } });
      const description = refused(await container.http(harness.coldClient()), 502, 'upstream_error');
      assert.match(description, /HTTP 400/);
      assert.equal(harness.proxy.received('token'), 1);
    });

    faultTest('does not retry a 401 invalid_client when the re-read secret is unchanged', async () => {
      const container = harness.newContainer();
      const reads = harness.secretsManager.getSecretValueCalls();
      harness.proxy.next('token', { status: 401, body: { error: 'invalid_client' } });
      const client = harness.coldClient();
      const description = refused(await container.http(client), 502, 'upstream_error');
      assert.match(description, /HTTP 401/);
      assert.match(description, new RegExp(client));
      assert.equal(harness.proxy.received('token'), 1, 'one token request: same secret, nothing to retry with');
      assert.equal(
        harness.secretsManager.getSecretValueCalls(),
        reads + 5,
        "the secret's first read and one re-read, the sealing key's read, and AWSPENDING and AWSPREVIOUS (none)",
      );
      assert.equal(container.metrics.of('SecretReloads'), 0);
    });

    faultTest('gives up on a token endpoint that hangs: 504 upstream_timeout within the budget', async () => {
      const container = harness.newContainer();
      const client = harness.coldClient();
      // Prime discovery, so that the broker's upstream latency measures the token request alone.
      ok(await container.http(client));
      harness.proxy.always('token', 'hang');
      const attempts = harness.proxy.received('token');
      refused(await container.http(client, writeScope), 504, 'upstream_timeout');
      // The call is measured, as every call to the token endpoint is (how long it took is the benchmark's to say).
      assert.ok(Number.isFinite(container.metrics.latencies.at(-1)), 'the timed-out call is in UpstreamLatency');
      // The first attempt's timeout is what is left of the budget: it gave up then, with no attempt beyond it.
      assert.equal(harness.proxy.received('token'), attempts + 1, 'one attempt, no retry past the budget');
    });

    faultTest('retries a connection reset and answers with the token of the next attempt', async () => {
      const container = harness.newContainer();
      harness.proxy.next('token', 'reset');
      ok(await container.http(harness.coldClient()));
      assert.equal(harness.proxy.received('token'), 2);
      assert.equal(harness.proxy.forwarded('token'), 1);
    });

    faultTest('answers 503 unavailable when every attempt is reset', async () => {
      const container = harness.newContainer();
      harness.proxy.always('token', 'reset');
      const client = harness.coldClient();
      const description = refused(await container.http(client), 503, 'unavailable');
      assert.match(description, new RegExp(client));
      assert.equal(harness.proxy.received('token'), 3, 'three attempts');
      assert.equal(harness.proxy.forwarded('token'), 0);
    });

    faultTest('keeps serving a still-valid token while its renewal fails (stale-served)', async (logs) => {
      const container = harness.newContainer();
      const client = harness.coldClient();
      const first = ok(await container.http(client));
      // 3600 s tokens are due for renewal in their last 300 s; 200 s are left, well above the 60 s window.
      container.clock.advance(3400_000);
      harness.proxy.always('token', { status: 503, body: { error: 'temporarily_unavailable' } });
      let calls = 0;
      for (let i = 0; i < 2; i++) {
        const answer = ok(await container.http(client));
        assert.equal(answer.json.access_token, first.json.access_token);
        const expiresIn = answer.json.expires_in as number;
        assert.ok(expiresIn > 60 && expiresIn <= 200, `the current token's remaining lifetime (${expiresIn})`);
        if (i === 0) calls = harness.proxy.received('token');
      }
      assert.ok(calls >= 1, 'the first request tried to renew');
      assert.equal(harness.proxy.received('token'), calls, 'the second came within the cooldown and did not');
      assert.equal(container.metrics.of('CooldownSkips'), 1);
      const served = logs.lines().filter((line) => line.message === 'token served' && line.client === client);
      assert.deepEqual(
        served.map((line) => line.cache),
        ['fetched', 'stale-served', 'stale-served'],
      );
      assert.equal(container.metrics.of('StaleServed'), 2);
      // Once the endpoint is back and the cooldown over, the next request renews.
      harness.proxy.reset();
      container.clock.advance(firstCooldownSeconds.provider_failing * 1000);
      const renewed = ok(await container.http(client));
      assert.notEqual(renewed.json.access_token, first.json.access_token);
      assert.ok((renewed.json.expires_in as number) > 3500);
    });
  });

  describe('shared cooldown', () => {
    faultTest(
      "honours a 429's Retry-After in every container, answering 503 with Retry-After meanwhile",
      async (logs) => {
        const client = harness.coldClient();
        const [first, second] = [harness.newContainer(), harness.newContainer()];
        harness.proxy.always('token', { status: 429, body: { error: 'slow_down' }, headers: { 'retry-after': '120' } });
        refused(await first.http(client), 502, 'upstream_error');
        assert.equal(harness.proxy.received('token'), 1);
        const waiting = await second.http(client);
        assert.match(refused(waiting, 503, 'unavailable'), /HTTP 429.*waits 1[12]\d s/);
        const retryAfter = Number(waiting.headers['Retry-After']);
        assert.ok(retryAfter > 110 && retryAfter <= 120, `Retry-After: ${retryAfter}`);
        assert.equal(harness.proxy.received('token'), 1, 'the second container did not call');
        assert.ok(
          logs
            .lines()
            .some(
              (line) =>
                line.message === 'token endpoint failing; every container waits before calling it again' &&
                line.reason === 'rate_limited',
            ),
        );

        harness.proxy.reset();
        for (const container of [first, second]) container.clock.advance(120_000);
        ok(await second.http(client));
        assert.equal(harness.proxy.received('token'), 1);
        ok(await first.http(client));
        assert.equal(harness.proxy.received('token'), 1, 'the first container found the new token in the table');
      },
    );

    faultTest('keeps a warm container serving while a cold one waits out a failing provider', async () => {
      const client = harness.coldClient();
      const warm = harness.newContainer();
      const first = ok(await warm.http(client));
      warm.clock.advance(3400_000);
      harness.proxy.always('token', { status: 500, body: 'down' });
      assert.equal(ok(await warm.http(client)).json.access_token, first.json.access_token);
      const calls = harness.proxy.received('token');
      for (let i = 0; i < 5; i++) {
        assert.equal(ok(await warm.http(client)).json.access_token, first.json.access_token);
      }
      assert.equal(harness.proxy.received('token'), calls, 'no call within the cooldown');
      assert.equal(warm.metrics.of('CooldownSkips'), 5);
    });
  });

  describe('issuance budget', () => {
    faultTest(
      'counts calls in the table across containers and refuses the one past maxTokenRequestsPerHour',
      async (logs) => {
        const [first, second] = [harness.newContainer(), harness.newContainer()];
        // Both at the middle of an hour, so that the requests fall in one budget window whenever the test runs.
        const toHalfPast = (1_800_000 - (first.clock.now() % 3_600_000) + 3_600_000) % 3_600_000;
        for (const container of [first, second]) container.clock.advance(toHalfPast);
        const before = harness.proxy.received('token');
        ok(await first.http('budgeted', readScope));
        ok(await second.http('budgeted', writeScope));
        assert.equal(harness.proxy.received('token'), before + 2);
        const refusal = await second.http('budgeted', `${readScope} ${writeScope}`);
        assert.match(refused(refusal, 503, 'unavailable'), /^client budgeted has made its 2 token requests this hour/);
        assert.ok(Number(refusal.headers['Retry-After']) > 0);
        assert.equal(harness.proxy.received('token'), before + 2, 'the refused call never left');
        assert.equal(second.metrics.of('IssuanceBudgetExhausted'), 1);
        assert.ok(
          logs
            .lines()
            .some((line) => line.message === 'token request refused: the client made its maxTokenRequestsPerHour'),
        );
        const hour = Math.floor(first.clock.now() / 3_600_000) * 3600;
        const table = new DynamoDBClient({});
        const counted = await table.send(
          new GetItemCommand({ TableName: tableName, Key: { [partitionKey]: { S: `issued:budgeted@${hour}` } } }),
        );
        table.destroy();
        assert.equal(counted.Item?.calls?.N, '2', 'one counter item, at the limit: the refused call added nothing');
      },
    );
  });

  describe('invalid token answers', () => {
    const invalid: [string, () => Fault][] = [
      ['an HTML page', () => 'garbage'],
      [
        'a body that is not JSON',
        () => ({
          status: 200,
          body: 'access_token=abc&token_type=bearer',
          headers: { 'content-type': 'application/json' },
        }),
      ],
      [
        'a JSON array',
        () => json([{ access_token: harness.injected(randomValue()), token_type: 'Bearer', expires_in: 3600 }]),
      ],
      ['no access_token', () => json({ token_type: 'Bearer', expires_in: 3600 })],
      ['an empty access_token', () => json({ access_token: '', token_type: 'Bearer', expires_in: 3600 })],
      [
        'token_type "mac"',
        () => json({ access_token: harness.injected(randomValue()), token_type: 'mac', expires_in: 3600 }),
      ],
      [
        'a negative expires_in',
        () => json({ access_token: harness.injected(randomValue()), token_type: 'Bearer', expires_in: -3600 }),
      ],
      [
        'expires_in 0',
        () => json({ access_token: harness.injected(randomValue()), token_type: 'Bearer', expires_in: 0 }),
      ],
      [
        'a fractional expires_in (3600.5)',
        () => json({ access_token: harness.injected(randomValue()), token_type: 'Bearer', expires_in: 3600.5 }),
      ],
      [
        'expires_in as a string ("3600")',
        () => json({ access_token: harness.injected(randomValue()), token_type: 'Bearer', expires_in: '3600' }),
      ],
      [
        'an absurd expires_in (1e12)',
        () => json({ access_token: harness.injected(randomValue()), token_type: 'Bearer', expires_in: 1e12 }),
      ],
      [
        `expires_in one second over 31 days (${maxExpiresInSeconds + 1})`,
        () =>
          json({
            access_token: harness.injected(randomValue()),
            token_type: 'Bearer',
            expires_in: maxExpiresInSeconds + 1,
          }),
      ],
    ];
    for (const [what, fault] of invalid) {
      faultTest(`refuses a token answer with ${what} (502) and does not cache it`, async () => {
        const container = harness.newContainer();
        const client = harness.coldClient();
        harness.proxy.next('token', fault());
        const description = refused(await container.http(client), 502, 'upstream_error');
        assert.match(description, new RegExp(client));
        assert.equal(harness.proxy.received('token'), 1, 'a 200 answer is not retried');
        // Nothing was cached: the next request goes upstream again and gets a real token.
        const upstream = harness.upstreamTokenRequests();
        ok(await container.http(client));
        assert.equal(harness.proxy.received('token'), 2);
        assert.equal(harness.upstreamTokenRequests(), upstream + 1);
      });
    }

    faultTest('refuses a token answer of several megabytes (502) and does not cache it', async () => {
      const container = harness.newContainer();
      const client = harness.coldClient();
      const huge = harness.injected(`${harness.injected(randomValue())}${'x'.repeat(4 * 1024 * 1024)}`);
      harness.proxy.always('token', json({ access_token: huge, token_type: 'Bearer', expires_in: 3600 }));
      const description = refused(await container.http(client), 502, 'upstream_error');
      assert.match(description, /oversized/);
      harness.proxy.always('token', 'pass');
      const before = harness.proxy.received('token');
      ok(await container.http(client));
      assert.equal(harness.proxy.received('token'), before + 1, 'the next request went upstream again');
    });

    faultTest('does not retry a token answer of several megabytes: exactly one token request', async () => {
      const container = harness.newContainer();
      const huge = harness.injected(`${harness.injected(randomValue())}${'x'.repeat(4 * 1024 * 1024)}`);
      harness.proxy.always('token', json({ access_token: huge, token_type: 'Bearer', expires_in: 3600 }));
      refused(await container.http(harness.coldClient()), 502, 'upstream_error');
      assert.equal(harness.proxy.received('token'), 1, 'an oversized 200 is an answer, not a network error');
    });

    for (const tokenType of ['bearer', 'BEARER']) {
      faultTest(`accepts token_type "${tokenType}" and answers Bearer`, async () => {
        const container = harness.newContainer();
        const token = harness.injected(randomValue());
        harness.proxy.next('token', json({ access_token: token, token_type: tokenType, expires_in: 3600 }));
        const answer = ok(await container.http(harness.coldClient()));
        assert.equal(answer.json.access_token, token);
        assert.equal(answer.json.token_type, 'Bearer');
        assert.ok((answer.json.expires_in as number) > 3590);
      });
    }
  });

  describe('token answers without expires_in', () => {
    faultTest("takes a JWT access token's lifetime from its exp claim", async () => {
      const container = harness.newContainer();
      const exp = Math.floor(container.clock.now() / 1000) + 1234;
      const part = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
      const jwt = harness.injected(
        `${part({ alg: 'RS256', typ: 'at+jwt' })}.${part({ exp, sub: 'faults-main', jti: randomValue() })}.${randomValue()}`,
      );
      harness.proxy.next('token', json({ access_token: jwt, token_type: 'Bearer' }));
      const before = container.clock.now();
      const answer = ok(await container.http(harness.coldClient()));
      const after = container.clock.now();
      assert.equal(answer.json.access_token, jwt);
      // What remains of exp when the answer was made, whole seconds rounded down: bounded by the clock
      // read before the request and after the answer, however long the request took.
      const expiresIn = answer.json.expires_in as number;
      assert.ok(
        expiresIn >= exp - Math.ceil(after / 1000) - 1 && expiresIn <= exp - Math.floor(before / 1000),
        `expires_in follows exp (${expiresIn}, ${(after - before) / 1000} s elapsed)`,
      );
    });

    faultTest("takes an opaque token's lifetime from the client's defaultExpiresIn", async () => {
      const container = harness.newContainer();
      const token = harness.injected(randomValue());
      harness.proxy.next('token', json({ access_token: token, token_type: 'Bearer' }));
      const before = container.clock.now();
      const answer = ok(await container.http('default-expiry'));
      const elapsed = Math.ceil((container.clock.now() - before) / 1000);
      assert.equal(answer.json.access_token, token);
      // 900 s from the moment the request was sent, less the whole seconds the request itself took.
      const expiresIn = answer.json.expires_in as number;
      assert.ok(
        expiresIn >= 900 - elapsed - 1 && expiresIn <= 900,
        `expires_in is the configured 900 s (${expiresIn}, ${elapsed} s elapsed)`,
      );
    });

    faultTest(
      'refuses an opaque token without expires_in and without defaultExpiresIn: 502 naming the client',
      async () => {
        const container = harness.newContainer();
        const client = harness.coldClient();
        harness.proxy.next('token', json({ access_token: harness.injected(randomValue()), token_type: 'Bearer' }));
        const description = refused(await container.http(client), 502, 'upstream_error');
        assert.match(description, new RegExp(`client ${client}\\b`));
        assert.match(description, /expires_in/);
        ok(await container.http(client));
        assert.equal(harness.proxy.received('token'), 2, 'not cached');
      },
    );
  });

  describe('discovery failures', () => {
    faultTest('keeps using the last good discovery document when a refetch an hour later fails', async (logs) => {
      const container = harness.newContainer();
      const client = harness.coldClient();
      ok(await container.http(client));
      assert.equal(harness.proxy.received('discovery'), 1);
      // The token has expired and the document is over an hour old: both are fetched again.
      container.clock.advance(hour + 60_000);
      harness.proxy.always('discovery', { status: 500, body: 'discovery is down' });
      const answer = ok(await container.http(client));
      assert.ok((answer.json.expires_in as number) > 3500, 'a new token');
      assert.ok(harness.proxy.received('discovery') >= 2, 'discovery was tried again');
      assert.equal(harness.proxy.forwarded('token'), 2);
      assert.ok(
        logs.lines().some((line) => line.message === 'discovery refetch failed; using the last good document'),
        'the fallback is logged',
      );
    });

    faultTest('refuses a discovery document that names another issuer: 502, and does not keep it', async () => {
      const container = harness.newContainer();
      const client = harness.coldClient();
      harness.proxy.next(
        'discovery',
        rewrite((document) => ({ ...document, issuer: 'https://issuer.example.com' })),
      );
      const description = refused(await container.http(client), 502, 'upstream_error');
      assert.match(description, new RegExp(`discovery document of client ${client}`));
      assert.equal(harness.proxy.received('token'), 0, 'no credentials were sent');
      ok(await container.http(client));
      assert.equal(harness.proxy.received('discovery'), 2, 'the bad document was not kept');
    });

    faultTest('refuses a discovery document with an http:// token endpoint: 502, no credentials sent', async () => {
      const container = harness.newContainer();
      const client = harness.coldClient();
      const insecure = harness.proxy.tokenEndpoint.replace(/^https:/, 'http:');
      harness.proxy.next(
        'discovery',
        rewrite((document) => ({ ...document, token_endpoint: insecure })),
      );
      const description = refused(await container.http(client), 502, 'upstream_error');
      assert.match(description, /https token_endpoint/);
      assert.match(description, new RegExp(client));
      assert.equal(harness.proxy.received('token'), 0);
    });
  });

  describe('secrets', () => {
    faultTest('re-reads a rotated secret once on invalid_client and retries with it', async (logs) => {
      const container = harness.newContainer();
      ok(await container.http('rotating', readScope));
      // Rotation at the provider and in Secrets Manager; the container still holds the old secret.
      const rotated = randomValue();
      await harness.rotateAtProvider('faults-rotating', rotated);
      harness.rotateInSecretsManager('faults-rotating', rotated);
      harness.proxy.reset();
      const reads = harness.secretsManager.getSecretValueCalls();
      const upstream = harness.upstreamTokenRequests();
      // Another scope set: a key with no cached token, so the endpoint is called with the cached (old) secret.
      ok(await container.http('rotating', writeScope));
      assert.equal(harness.secretsManager.getSecretValueCalls(), reads + 1, 'exactly one extra GetSecretValue');
      assert.equal(harness.upstreamTokenRequests(), upstream + 2, 'refused with the old secret, then accepted');
      assert.equal(container.metrics.of('SecretReloads'), 1);
      assert.ok(
        logs
          .lines()
          .some((line) => line.message === 'token endpoint refused the client; retrying with the re-read secret'),
      );
      // The old token of the first scope set is still served; the new secret is used from now on.
      ok(await container.http('rotating', readScope));
    });

    faultTest(
      'loses no request when the provider takes the new secret before Secrets Manager makes it current (AWSPENDING)',
      async (logs) => {
        const container = harness.newContainer();
        ok(await container.http('pending', readScope));
        const rotated = randomValue();
        await harness.rotateAtProvider('faults-pending', rotated);
        harness.rotateInSecretsManager('faults-pending', rotated, { pending: true });
        harness.proxy.reset();
        const reads = harness.secretsManager.getSecretValueCalls();
        const upstream = harness.upstreamTokenRequests();
        ok(await container.http('pending', writeScope));
        assert.equal(harness.upstreamTokenRequests(), upstream + 2, 'refused with the current secret, then accepted');
        // The current one re-read, then AWSPENDING and AWSPREVIOUS (there is none yet).
        assert.equal(harness.secretsManager.getSecretValueCalls(), reads + 3);
        assert.equal(container.metrics.of('SecretFallbacks'), 1);
        assert.ok(logs.lines().some((line) => line.secretStage === 'pending' && line.level === 'WARN'));

        // Once the rotation finishes, a new container reads the new secret as current and is taken at once.
        harness.finishRotationInSecretsManager('faults-pending');
        const fresh = harness.newContainer();
        const before = harness.upstreamTokenRequests();
        ok(await fresh.http('pending', `${readScope} ${writeScope}`));
        assert.equal(harness.upstreamTokenRequests(), before + 1);
        assert.equal(fresh.metrics.of('SecretFallbacks'), 0);
      },
    );

    faultTest(
      'loses no request when Secrets Manager rotates before the provider takes the new secret (AWSPREVIOUS)',
      async (logs) => {
        harness.rotateInSecretsManager('faults-lagging', randomValue());
        const container = harness.newContainer();
        const upstream = harness.upstreamTokenRequests();
        ok(await container.http('lagging', readScope));
        assert.equal(harness.upstreamTokenRequests(), upstream + 2, 'refused with the new secret, taken with the old');
        assert.equal(container.metrics.of('SecretFallbacks'), 1);
        assert.ok(logs.lines().some((line) => line.secretStage === 'previous' && line.level === 'WARN'));
        // Another container finds that token in the table: it is sealed under the secret every container reads.
        const other = harness.newContainer();
        const before = harness.upstreamTokenRequests();
        ok(await other.http('lagging', readScope));
        assert.equal(harness.upstreamTokenRequests(), before);
      },
    );

    faultTest('picks a rotated secret up within the cache bound, without a redeploy', async () => {
      const container = harness.newContainer();
      ok(await container.http('bounded', readScope));
      const rotated = randomValue();
      await harness.rotateAtProvider('faults-bounded', rotated);
      harness.rotateInSecretsManager('faults-bounded', rotated);
      harness.proxy.reset();
      // Past TOKEN_BROKER_SECRET_MAX_AGE_SECONDS (default 300 s): the next token call reads the secret anew.
      container.clock.advance(301_000);
      const reads = harness.secretsManager.getSecretValueCalls();
      ok(await container.http('bounded', writeScope));
      // The sealing key has the same bound: it is read anew beside the secret.
      assert.equal(harness.secretsManager.getSecretValueCalls(), reads + 2);
      assert.equal(harness.proxy.received('token'), 1, 'the new secret was used at once, no invalid_client round');
      assert.equal(container.metrics.of('SecretReloads'), 0);
    });

    faultTest('answers 503 naming the client for a secret missing a field, without echoing it', async () => {
      const value = randomValue('leak-');
      harness.putSecret('faults/fields-missing', JSON.stringify({ client_id: 'faults-main', clientSecret: value }), [
        value,
      ]);
      const container = harness.newContainer();
      const answer = await container.http('fields-missing');
      const description = refused(answer, 503, 'unavailable');
      assert.match(description, /client fields-missing/);
      assert.match(description, /client_secret/);
      assertNoLeak(answer.body, [value, 'faults-main']);
      assert.equal(harness.proxy.received('token'), 0);
    });

    faultTest('answers 503 naming the client for a secret that is not JSON, without echoing it', async () => {
      const value = randomValue('leak-');
      harness.putSecret('faults/not-json', `client_id=faults-main client_secret=${value}`, [value]);
      const container = harness.newContainer();
      const answer = await container.http('not-json');
      const description = refused(answer, 503, 'unavailable');
      assert.match(description, /client not-json/);
      assertNoLeak(answer.body, [value]);
      assert.equal(harness.proxy.received('token'), 0);
    });

    faultTest('keeps using the cached secret while Secrets Manager fails', async (logs) => {
      const container = harness.newContainer();
      const client = harness.coldClient();
      ok(await container.http(client, readScope));
      // The cached secret is past its bound, and every read fails (the SDK's retries included).
      container.clock.advance(301_000);
      harness.secretsManager.failNext(20);
      const reads = harness.secretsManager.getSecretValueCalls();
      ok(await container.http(client, writeScope));
      assert.ok(harness.secretsManager.getSecretValueCalls() > reads, 'Secrets Manager was asked');
      assert.ok(logs.lines().some((line) => line.message === 'secret read failed; using the last value read'));
    });
  });

  describe('DynamoDB failures', () => {
    faultTest(
      'serves tokens with the table down: single flight holds, the failure is logged and counted',
      async (logs) => {
        const spare = await harness.spareDynamo();
        const original = process.env.AWS_ENDPOINT_URL_DYNAMODB;
        process.env.AWS_ENDPOINT_URL_DYNAMODB = spare.endpoint;
        try {
          const container = harness.newContainer();
          const client = harness.coldClient();
          ok(await container.http(client, readScope));
          assert.equal(container.metrics.of('SharedCacheErrors'), 0, 'the table worked before it was stopped');
          await spare.close();
          harness.proxy.reset();

          const answers = await Promise.all(Array.from({ length: 20 }, () => container.http(client, writeScope)));
          for (const answer of answers) ok(answer);
          assert.equal(new Set(answers.map((answer) => answer.json.access_token)).size, 1, 'one token for all');
          assert.equal(harness.proxy.received('token'), 1, 'single flight: one token request for 20 callers');
          assert.ok(container.metrics.of('SharedCacheErrors') > 0, 'SharedCacheErrors counted');
          assert.ok(
            logs
              .lines()
              .some((line) => typeof line.message === 'string' && /^token table .* failed/.test(line.message)),
            'the table failure is logged',
          );
          // The memory tier keeps answering.
          ok(await container.http(client, writeScope));
          assert.equal(harness.proxy.received('token'), 1);
        } finally {
          process.env.AWS_ENDPOINT_URL_DYNAMODB = original;
        }
      },
    );
  });
});
