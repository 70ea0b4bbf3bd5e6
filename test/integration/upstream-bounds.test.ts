/**
 * Issue #10, item 7: what a provider says is repeated only when it is plain, and a client may pin the hosts its
 * token endpoint may be on. Against the real handler, oidc-provider over TLS (behind the fault proxy where a
 * test needs to change its answers), dynalite and the Secrets Manager stand-in (test/support/broker-harness.ts);
 * Secrets Manager error names against the real SDK and a one-route server that answers what the test says.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { after, afterEach, before, describe, it } from 'node:test';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SecretsManagerSecretSource } from '../../lambdas/adapters/secrets-manager.js';
import { BrokerError } from '../../lambdas/core/errors.js';
import { environmentVariables } from '../../lambdas/entry/environment.js';
import { listenOnLoopback } from '../../lambdas/local/listen.js';
import { type BrokerHarness, type HttpAnswer, startBrokerHarness } from '../support/broker-harness.js';
import { FakeClock, RecordingLogger } from '../support/fakes.js';
import { type Fault, type FaultProxy, rewrite, startFaultProxy } from '../support/fault-proxy.js';
import { assertNoLeak } from '../support/logs.js';

let harness: BrokerHarness;
let proxy: FaultProxy;
let clientCount = 0;

/** A value that cannot occur in a log or a description by chance. */
const markerOf = (prefix: string) => `${prefix}${randomBytes(6).toString('hex')}`;

/** The bwell credentials under a name no earlier request used, so nothing cached answers for it. */
function freshClient(extra: Record<string, unknown> = {}): { name: string; config: Record<string, unknown> } {
  clientCount++;
  return {
    name: `bounds-${clientCount}`,
    config: {
      secretName: 'token-broker/bwell',
      scopes: ['system/*.read'],
      defaultScope: 'system/*.read',
      authMethod: 'client_secret_post',
      ...extra,
    },
  };
}

/** POSTs for a fresh client in a fresh container, returning the answer and what was logged meanwhile. */
async function askFresh(extra: Record<string, unknown>): Promise<{ answer: HttpAnswer; logs: string }> {
  const { name, config } = freshClient(extra);
  const logsBefore = harness.output.text().length;
  const answer = await harness.withExtraClient(name, config, (http) => http(name));
  return { answer, logs: harness.output.text().slice(logsBefore) };
}

function assertRefused(answer: HttpAnswer, status: number, code: string): string {
  assert.equal(answer.statusCode, status, answer.body);
  assert.deepEqual(Object.keys(answer.json).sort(), ['error', 'error_description'], answer.body);
  assert.equal(answer.json.error, code, answer.body);
  return answer.json.error_description as string;
}

const hostOf = (url: string) => new URL(url).host;

/** The deployment's approved hosts (TOKEN_BROKER_TOKEN_ENDPOINT_HOSTS) while `work` runs; undefined: none. */
async function withDeploymentHosts<T>(hosts: string | undefined, work: () => Promise<T>): Promise<T> {
  const variable = environmentVariables.tokenEndpointHosts;
  const before = process.env[variable];
  if (hosts === undefined) delete process.env[variable];
  else process.env[variable] = hosts;
  try {
    return await work();
  } finally {
    if (before === undefined) delete process.env[variable];
    else process.env[variable] = before;
  }
}

/** The JSON lines of `logs` (log records and EMF metric records). */
const recordsOf = (logs: string) =>
  logs
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
const refusalMessage = 'token endpoint host not approved; nothing was sent';

describe('text from upstream, and pinned token endpoint hosts (issue #10)', () => {
  before(async () => {
    harness = await startBrokerHarness();
    proxy = await startFaultProxy(harness.oidc);
    // The proxy names its token endpoint on another host than its issuer, as Cognito does: the deployment approves it.
    process.env[environmentVariables.tokenEndpointHosts] += `,${hostOf(proxy.tokenEndpoint)}`;
  });
  afterEach(() => {
    proxy.reset();
  });
  after(async () => {
    await proxy?.close();
    await harness?.close();
  });

  describe('the provider’s OAuth error code', () => {
    it('is dropped from the description and the logs, whole, unless it is a plain code; the status is kept', async () => {
      const marker = markerOf('upstream');
      const hostile: [string, Fault][] = [
        ['spaces and markup', { status: 400, body: { error: `invalid_client' <script>${marker}</script>` } }],
        ['a newline', { status: 400, body: { error: `invalid_client\n<script>${marker}` } }],
        ['quotes', { status: 400, body: { error: `"${marker}" or '1'='1` } }],
        ['more than 64 characters', { status: 400, body: { error: `invalid_client_${marker}`.repeat(4) } }],
        [
          'a WWW-Authenticate challenge with a space',
          { status: 401, headers: { 'www-authenticate': `Bearer error="invalid_client ${marker}"` }, body: {} },
        ],
      ];
      for (const [what, fault] of hostile) {
        proxy.always('token', fault);
        const { answer, logs } = await askFresh({ wellKnownUrl: proxy.wellKnownUrl });
        const status = (fault as { status: number }).status;
        const description = assertRefused(answer, 502, 'upstream_error');
        assert.match(description, new RegExp(`refused the request \\(HTTP ${status}\\)$`), `${what}: ${description}`);
        for (const part of [marker, '<script>', 'invalid_client']) {
          assert.ok(!description.includes(part), `${what}: the description repeats ${part}: ${description}`);
        }
        assert.ok(logs.includes('token request failed'), `${what}: the failure was logged`);
        assert.ok(!logs.includes(marker), `${what}: a log line repeats the provider's error`);
        assertNoLeak(logs, harness.secrets());
      }

      // A plain code still travels: the check drops only what is not one.
      proxy.always('token', { status: 400, body: { error: 'invalid_scope' } });
      const { answer } = await askFresh({ wellKnownUrl: proxy.wellKnownUrl });
      assert.match(assertRefused(answer, 502, 'upstream_error'), /refused the request \(HTTP 400\): invalid_scope$/);
    });
  });

  describe('tokenEndpointHosts', () => {
    it('refuses with 502, calling nothing, when discovery names a token endpoint on another host', async () => {
      const proxyHost = hostOf(proxy.tokenEndpoint);
      // The proxy's discovery document, rewritten to send the token request past the proxy to the provider itself.
      proxy.always(
        'discovery',
        rewrite((document) => ({ ...document, token_endpoint: harness.oidc.tokenEndpoint })),
      );
      const upstream = harness.oidc.tokenRequests();
      const diverted = await askFresh({ wellKnownUrl: proxy.wellKnownUrl, tokenEndpointHosts: [proxyHost] });
      const description = assertRefused(diverted.answer, 502, 'upstream_error');
      assert.match(description, /^the token endpoint host of client bounds-\d+ is not approved, so nothing was sent/);
      assert.match(description, /correct tokenBroker\.clients\.bounds-\d+\.tokenEndpointHosts/);
      assert.ok(!description.includes(hostOf(harness.oidc.tokenEndpoint)), 'the named host is not repeated');
      assert.equal(proxy.received('discovery') > 0, true, 'discovery went through the proxy');
      assert.equal(proxy.received('token'), 0, 'no token request reached the proxy');
      assert.equal(harness.oidc.tokenRequests(), upstream, 'no token request reached the provider');
      assertNoLeak(diverted.logs, harness.secrets());

      // The provider's own document names 127.0.0.1:<port>: another name for the host, or another port, is not it.
      const oidcPort = new URL(harness.oidc.tokenEndpoint).port;
      for (const pinned of [`localhost:${oidcPort}`, '127.0.0.1', `127.0.0.1:${Number(oidcPort) + 1}`]) {
        const { answer } = await askFresh({ wellKnownUrl: harness.oidc.wellKnownUrl, tokenEndpointHosts: [pinned] });
        assertRefused(answer, 502, 'upstream_error');
        assert.equal(harness.oidc.tokenRequests(), upstream, `pinned to ${pinned}: no token request was sent`);
      }
    });

    it('serves a client whose discovery names a token endpoint on one of its hosts', async () => {
      const upstream = harness.oidc.tokenRequests();
      const { answer } = await askFresh({
        wellKnownUrl: harness.oidc.wellKnownUrl,
        tokenEndpointHosts: ['auth.example.com', hostOf(harness.oidc.tokenEndpoint)],
      });
      assert.equal(answer.statusCode, 200, answer.body);
      assert.equal(answer.json.token_type, 'Bearer');
      assert.equal(harness.oidc.tokenRequests(), upstream + 1);
    });

    it('refuses a pinned client even when an unpinned client of the same discovery URL cached the document', async () => {
      const unpinned = freshClient({ wellKnownUrl: harness.oidc.wellKnownUrl });
      const pinned = freshClient({
        wellKnownUrl: harness.oidc.wellKnownUrl,
        tokenEndpointHosts: [`localhost:${new URL(harness.oidc.tokenEndpoint).port}`],
      });
      await harness.withExtraClient(unpinned.name, unpinned.config, () =>
        harness.withExtraClient(pinned.name, pinned.config, async (http) => {
          const served = await http(unpinned.name);
          assert.equal(served.statusCode, 200, served.body);
          const upstream = harness.oidc.tokenRequests();
          assertRefused(await http(pinned.name), 502, 'upstream_error');
          assert.equal(harness.oidc.tokenRequests(), upstream, 'no token request was sent for the pinned client');
        }),
      );
    });
  });

  describe('approved token endpoint hosts, without a pin (issue #16)', () => {
    it("refuses a token endpoint on another host than the issuer's: 502, nothing sent, logged and counted", async () => {
      // The proxy's issuer is localhost:<port>, its token endpoint 127.0.0.1:<port>: Cognito's shape.
      const upstream = harness.oidc.tokenRequests();
      const { answer, logs } = await withDeploymentHosts(undefined, () =>
        askFresh({ wellKnownUrl: proxy.wellKnownUrl }),
      );
      const description = assertRefused(answer, 502, 'upstream_error');
      assert.match(description, /^the token endpoint host of client bounds-\d+ is not approved, so nothing was sent/);
      assert.match(
        description,
        /outside tokenBroker\.tokenEndpointHosts; pin it with tokenBroker\.clients\.bounds-\d+\./,
      );
      assert.ok(!description.includes(hostOf(proxy.tokenEndpoint)), 'the named host is not repeated to the caller');
      assert.equal(proxy.received('token'), 0, 'no token request reached the host discovery named');
      assert.equal(harness.oidc.tokenRequests(), upstream, 'no token request reached the provider');

      const records = recordsOf(logs);
      const refusals = records.filter((record) => record.message === refusalMessage);
      assert.equal(refusals.length, 1, logs);
      assert.equal(refusals[0]?.level, 'ERROR');
      assert.match(String(refusals[0]?.client), /^bounds-\d+$/);
      assert.equal(refusals[0]?.tokenEndpointHost, hostOf(proxy.tokenEndpoint));
      assert.equal(refusals[0]?.issuerHost, hostOf(proxy.issuer));
      assert.equal(
        records.filter((record) => '_aws' in record && record.TokenEndpointRefused === 1).length,
        1,
        'one TokenEndpointRefused metric',
      );
      assertNoLeak(logs, harness.secrets());
    });

    it("serves a token endpoint on the issuer's host", async () => {
      const issuerHost = hostOf(proxy.issuer);
      proxy.always(
        'discovery',
        rewrite((document) => ({ ...document, token_endpoint: `https://${issuerHost}/token` })),
      );
      const { answer } = await withDeploymentHosts(undefined, () => askFresh({ wellKnownUrl: proxy.wellKnownUrl }));
      assert.equal(answer.statusCode, 200, answer.body);
      assert.equal(proxy.received('token'), 1, 'the token request went to the issuer host');
    });

    it('serves a token endpoint on a host the deployment lists', async () => {
      const { answer } = await withDeploymentHosts(`auth.example.com,${hostOf(proxy.tokenEndpoint)}`, () =>
        askFresh({ wellKnownUrl: proxy.wellKnownUrl }),
      );
      assert.equal(answer.statusCode, 200, answer.body);
      assert.equal(proxy.received('token'), 1);
    });

    it('logs a host that is not a plain host name without repeating it', async () => {
      const marker = markerOf('host');
      proxy.always(
        'discovery',
        rewrite((document) => ({ ...document, token_endpoint: `https://evil_${marker}.example/token` })),
      );
      const { answer, logs } = await askFresh({ wellKnownUrl: proxy.wellKnownUrl });
      assert.ok(!assertRefused(answer, 502, 'upstream_error').includes(marker));
      const refusal = recordsOf(logs).find((record) => record.message === refusalMessage);
      assert.equal(refusal?.tokenEndpointHost, '(not a plain host name)', logs);
      assert.ok(!logs.includes(marker), 'no log line repeats the host');
    });
  });
});

describe('Secrets Manager error names (issue #10)', () => {
  const marker = markerOf('awserror');
  // No ':', ',' or '#': the SDK would cut the name there, and the test wants it whole.
  const hostileName = `Denied <script>${marker}</script>`;
  let answerWith: 'secret' | 'error' = 'error';
  let server: Server;
  let endpoint: string;

  before(async () => {
    server = createServer((request, response) => {
      request.resume();
      request.on('end', () => {
        if (answerWith === 'secret') {
          response.writeHead(200, { 'content-type': 'application/x-amz-json-1.1' });
          response.end(
            JSON.stringify({
              ARN: 'arn:aws:secretsmanager:us-east-1:123456789012:secret:bounds-AbCdEf',
              Name: 'bounds',
              VersionId: 'v1',
              SecretString: JSON.stringify({ client_id: 'bounds-id', client_secret: markerOf('secret') }),
            }),
          );
          return;
        }
        response.writeHead(400, { 'content-type': 'application/x-amz-json-1.1', 'x-amzn-errortype': hostileName });
        response.end(JSON.stringify({ __type: hostileName, message: 'refused' }));
      });
    });
    endpoint = `http://127.0.0.1:${await listenOnLoopback(server)}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  const config = {
    wellKnownUrl: 'https://idp.example/.well-known/openid-configuration',
    secretName: 'bounds',
    scopes: ['a'],
  };
  const sourceOf = (clock: FakeClock, logger: RecordingLogger) =>
    new SecretsManagerSecretSource(
      new SecretsManagerClient({ endpoint, region: 'us-east-1', maxAttempts: 1 }),
      clock,
      logger,
    );

  it('names an error type that is not a plain code as Error in the description', async () => {
    answerWith = 'error';
    const thrown = await sourceOf(new FakeClock(), new RecordingLogger())
      .getCredentials('bounds', config)
      .then(
        () => undefined,
        (error: unknown) => error,
      );
    assert.ok(thrown instanceof BrokerError, String(thrown));
    assert.equal(thrown.code, 'unavailable');
    assert.match(thrown.message, /could not be read from Secrets Manager \(Error\)$/);
    assert.ok(!thrown.message.includes(marker), thrown.message);
  });

  it('logs an error type that is not a plain code as Error when it falls back to the last value read', async () => {
    const clock = new FakeClock();
    const logger = new RecordingLogger();
    const source = sourceOf(clock, logger);
    answerWith = 'secret';
    const first = await source.getCredentials('bounds', config);
    answerWith = 'error';
    clock.advance(10 * 60_000);
    assert.equal(await source.getCredentials('bounds', config), first, 'the last value read is reused');
    const warnings = logger.lines.filter((line) => line.message === 'secret read failed; using the last value read');
    assert.equal(warnings.length, 1);
    assert.equal(warnings[0]?.attributes.errorName, 'Error');
    assert.ok(!JSON.stringify(logger.lines).includes(marker), 'no log line repeats the error name');
  });
});
