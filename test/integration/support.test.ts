/**
 * Proves the local stand-ins the integration tests build on: the OpenID provider over TLS (trusted through the
 * runner's NODE_EXTRA_CA_CERTS only), the Secrets Manager stand-in and dynalite through the real AWS SDK
 * clients (configured by environment only), and output capture.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect, rootCertificates } from 'node:tls';
import { pathToFileURL } from 'node:url';
import { Logger } from '@aws-lambda-powertools/logger';
import {
  DescribeTableCommand,
  DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  ResourceNotFoundException as TableNotFoundException,
} from '@aws-sdk/client-dynamodb';
import {
  CreateSecretCommand,
  DescribeSecretCommand,
  GetSecretValueCommand,
  PutSecretValueCommand,
  ResourceNotFoundException,
  SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import { partitionKey } from '../../lambdas/adapters/dynamodb-schema.js';
import { createTokenTable, type LocalDynamo, startDynalite } from '../../lambdas/local/dynalite.js';
import { type LocalOidcServer, type LocalSecretClient, startOidcServer } from '../../lambdas/local/oidc-server.js';
import { assertNoLeak, type CapturedOutput, captureOutput } from '../support/logs.js';
import { type SecretsManagerStandIn, startSecretsManagerStandIn } from '../support/secrets-manager.js';
import { loadTestTls } from '../support/tls.js';

interface TokenResponse {
  status: number;
  body: Record<string, unknown>;
}

const postClient: LocalSecretClient = {
  clientId: 'post-client',
  clientSecret: 'post-secret-4c1d',
  authMethod: 'client_secret_post',
  scopes: ['system/*.read', 'system/*.write'],
};
const basicClient: LocalSecretClient = {
  clientId: 'basic-client',
  clientSecret: 'basic secret/with+odd:chars',
  authMethod: 'client_secret_basic',
  scopes: ['system/*.read'],
};

async function requestToken(
  tokenEndpoint: string,
  client: LocalSecretClient,
  scope: string,
  authMethod = client.authMethod,
): Promise<TokenResponse> {
  const form = new URLSearchParams({ grant_type: 'client_credentials', scope });
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' };
  if (authMethod === 'client_secret_basic') {
    // RFC 6749 §2.3.1: form-encode the id and secret before base64.
    const encode = (value: string) => new URLSearchParams({ v: value }).toString().slice(2);
    const credentials = `${encode(client.clientId)}:${encode(client.clientSecret)}`;
    headers.authorization = `Basic ${Buffer.from(credentials).toString('base64')}`;
  } else {
    form.set('client_id', client.clientId);
    form.set('client_secret', client.clientSecret);
  }
  const response = await fetch(tokenEndpoint, { method: 'POST', headers, body: form });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

function withEnv(name: string, value: string): () => void {
  const previous = process.env[name];
  process.env[name] = value;
  return () => {
    if (previous === undefined) delete process.env[name];
    else process.env[name] = previous;
  };
}

describe('local OpenID provider over TLS', () => {
  let server: LocalOidcServer;
  let output: CapturedOutput;

  before(async () => {
    // Captured from before the provider module is first loaded, to catch its start-up notices too.
    output = captureOutput();
    const { key, cert } = loadTestTls();
    server = await startOidcServer({
      clients: [postClient, basicClient],
      tls: { key, cert },
      accessTokenTtlSeconds: 300,
    });
  });

  after(async () => {
    output.restore();
    await server.close();
  });

  it('serves discovery over https to a plain fetch that trusts the test CA only through NODE_EXTRA_CA_CERTS', async () => {
    assert.match(server.issuer, /^https:\/\/localhost:\d+$/);
    const response = await fetch(server.wellKnownUrl);
    assert.equal(response.status, 200);
    const discovery = (await response.json()) as Record<string, unknown>;
    assert.equal(discovery.issuer, server.issuer);
    assert.ok((discovery.grant_types_supported as string[]).includes('client_credentials'));
  });

  it('is refused by a TLS client that does not trust the test CA (verification is real)', async () => {
    const { port } = new URL(server.issuer);
    const error = await new Promise<Error & { code?: string }>((resolve, reject) => {
      const socket = connect({
        host: '127.0.0.1',
        port: Number(port),
        servername: 'localhost',
        ca: [...rootCertificates],
      });
      socket.once('secureConnect', () => {
        socket.destroy();
        reject(new Error('handshake succeeded without the test CA'));
      });
      socket.once('error', resolve);
    });
    assert.match(
      error.code ?? '',
      /^(UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT(_LOCALLY)?|SELF_SIGNED_CERT_IN_CHAIN)$/,
    );
  });

  it('advertises its token endpoint on a different host than the issuer, as Cognito does', async () => {
    const discovery = (await (await fetch(server.wellKnownUrl)).json()) as Record<string, string>;
    assert.equal(discovery.token_endpoint, server.tokenEndpoint);
    const tokenUrl = new URL(server.tokenEndpoint);
    assert.equal(tokenUrl.protocol, 'https:');
    assert.equal(tokenUrl.hostname, '127.0.0.1');
    assert.notEqual(tokenUrl.hostname, new URL(server.issuer).hostname);
  });

  it('issues a Bearer token with the requested SMART scope to a client_secret_post client', async () => {
    const { status, body } = await requestToken(server.tokenEndpoint, postClient, 'system/*.read');
    assert.equal(status, 200);
    assert.equal(body.token_type, 'Bearer');
    assert.equal(body.scope, 'system/*.read');
    assert.equal(body.expires_in, 300);
    assert.equal(typeof body.access_token, 'string');
    assert.ok((body.access_token as string).length >= 20);
  });

  it('issues a Bearer token with the requested SMART scope to a client_secret_basic client', async () => {
    const { status, body } = await requestToken(server.tokenEndpoint, basicClient, 'system/*.read');
    assert.equal(status, 200);
    assert.equal(body.token_type, 'Bearer');
    assert.equal(body.scope, 'system/*.read');
    assert.equal(body.expires_in, 300);
  });

  it('grants several scopes at once when the client holds them all', async () => {
    const { status, body } = await requestToken(server.tokenEndpoint, postClient, 'system/*.read system/*.write');
    assert.equal(status, 200);
    assert.deepEqual(String(body.scope).split(' ').sort(), ['system/*.read', 'system/*.write']);
  });

  it('refuses a client that authenticates with another method than the one it is registered with', async () => {
    const asBasic = await requestToken(server.tokenEndpoint, postClient, 'system/*.read', 'client_secret_basic');
    assert.equal(asBasic.status, 401);
    assert.equal(asBasic.body.error, 'invalid_client');
    const asPost = await requestToken(server.tokenEndpoint, basicClient, 'system/*.read', 'client_secret_post');
    assert.equal(asPost.status, 401);
    assert.equal(asPost.body.error, 'invalid_client');
  });

  it('refuses a wrong client secret with invalid_client', async () => {
    const { status, body } = await requestToken(
      server.tokenEndpoint,
      { ...postClient, clientSecret: 'not-the-secret' },
      'system/*.read',
    );
    assert.equal(status, 401);
    assert.equal(body.error, 'invalid_client');
  });

  it('refuses a scope the client does not hold, and a scope the server does not know, with invalid_scope', async () => {
    const notHeld = await requestToken(server.tokenEndpoint, basicClient, 'system/*.write');
    assert.equal(notHeld.status, 400);
    assert.equal(notHeld.body.error, 'invalid_scope');
    const unknown = await requestToken(server.tokenEndpoint, postClient, 'system/*.read patient/*.read');
    assert.equal(unknown.status, 400);
    assert.equal(unknown.body.error, 'invalid_scope');
  });

  it('counts every POST that reaches the token endpoint, successful or not, and nothing else', async () => {
    const before = server.tokenRequests();
    await requestToken(server.tokenEndpoint, postClient, 'system/*.read');
    await requestToken(server.tokenEndpoint, basicClient, 'system/*.read');
    await requestToken(server.tokenEndpoint, basicClient, 'system/*.write');
    await fetch(server.wellKnownUrl);
    assert.equal(server.tokenRequests() - before, 3);
  });

  it('wrote nothing to stdout or stderr while starting and serving the requests above', () => {
    assert.equal(output.text(), '');
  });
});

describe('local OpenID provider over plain http (local dev server)', () => {
  it('serves discovery and tokens on http://127.0.0.1 when given no TLS material', async () => {
    const server = await startOidcServer({ clients: [postClient], issuerHost: '127.0.0.1', tokenHost: 'localhost' });
    try {
      assert.match(server.issuer, /^http:\/\/127\.0\.0\.1:\d+$/);
      const discovery = (await (await fetch(server.wellKnownUrl)).json()) as Record<string, string>;
      assert.equal(discovery.token_endpoint, server.tokenEndpoint);
      assert.equal(new URL(server.tokenEndpoint).hostname, 'localhost');
      const { status, body } = await requestToken(server.tokenEndpoint, postClient, 'system/*.write');
      assert.equal(status, 200);
      assert.equal(body.expires_in, 3600);
      assert.equal(server.tokenRequests(), 1);
    } finally {
      await server.close();
    }
  });
});

describe('Secrets Manager stand-in through the real SecretsManagerClient', () => {
  let standIn: SecretsManagerStandIn;
  let client: SecretsManagerClient;
  let restoreEnv: () => void;

  before(async () => {
    standIn = await startSecretsManagerStandIn();
    restoreEnv = withEnv('AWS_ENDPOINT_URL_SECRETS_MANAGER', standIn.endpoint);
    // No endpoint, region or credentials in code: the SDK takes them from the environment.
    client = new SecretsManagerClient({});
  });

  after(async () => {
    client.destroy();
    restoreEnv();
    await standIn.close();
  });

  it('returns a secret stored with putSecret, by name and by the ARN it issued', async () => {
    standIn.putSecret('broker/clients/alpha', '{"clientSecret":"s3cr3t"}');
    const byName = await client.send(new GetSecretValueCommand({ SecretId: 'broker/clients/alpha' }));
    assert.equal(byName.Name, 'broker/clients/alpha');
    assert.equal(byName.SecretString, '{"clientSecret":"s3cr3t"}');
    assert.deepEqual(byName.VersionStages, ['AWSCURRENT']);
    assert.ok(byName.CreatedDate instanceof Date);
    assert.match(byName.ARN ?? '', /^arn:aws:secretsmanager:us-east-1:\d{12}:secret:broker\/clients\/alpha-\w{6}$/);

    const byArn = await client.send(new GetSecretValueCommand({ SecretId: byName.ARN }));
    assert.equal(byArn.SecretString, '{"clientSecret":"s3cr3t"}');
    assert.equal(byArn.VersionId, byName.VersionId);
  });

  it('serves the newest value after putSecret, CreateSecret or PutSecretValue', async () => {
    const created = await client.send(new CreateSecretCommand({ Name: 'broker/clients/beta', SecretString: 'one' }));
    assert.equal(created.Name, 'broker/clients/beta');
    standIn.putSecret('broker/clients/beta', 'two');
    assert.equal(
      (await client.send(new GetSecretValueCommand({ SecretId: 'broker/clients/beta' }))).SecretString,
      'two',
    );
    const put = await client.send(new PutSecretValueCommand({ SecretId: created.ARN, SecretString: 'three' }));
    const latest = await client.send(new GetSecretValueCommand({ SecretId: 'broker/clients/beta' }));
    assert.equal(latest.SecretString, 'three');
    assert.equal(latest.VersionId, put.VersionId);
  });

  it('answers an unknown secret with ResourceNotFoundException, which the SDK does not retry', async () => {
    const before = standIn.getSecretValueCalls();
    await assert.rejects(client.send(new GetSecretValueCommand({ SecretId: 'broker/missing' })), (error: unknown) => {
      assert.ok(error instanceof ResourceNotFoundException);
      assert.equal(error.message, "Secrets Manager can't find the specified secret.");
      assert.equal(error.$metadata.httpStatusCode, 400);
      return true;
    });
    assert.equal(standIn.getSecretValueCalls() - before, 1);
  });

  it('fails the next GetSecretValue calls on demand: a throttle is retried by the SDK and then succeeds', async () => {
    standIn.putSecret('broker/clients/gamma', 'g');
    const before = standIn.getSecretValueCalls();
    standIn.failNext(1, 'ThrottlingException');
    const result = await client.send(new GetSecretValueCommand({ SecretId: 'broker/clients/gamma' }));
    assert.equal(result.SecretString, 'g');
    assert.equal(result.$metadata.attempts, 2);
    assert.equal(standIn.getSecretValueCalls() - before, 2);
  });

  it('fails the next GetSecretValue calls on demand: InternalServiceError is an HTTP 500 surfaced once retries are spent', async () => {
    standIn.putSecret('broker/clients/delta', 'd');
    const noRetry = new SecretsManagerClient({ maxAttempts: 1 });
    try {
      standIn.failNext(1);
      await assert.rejects(
        noRetry.send(new GetSecretValueCommand({ SecretId: 'broker/clients/delta' })),
        (error: unknown) => {
          assert.ok(error instanceof Error);
          assert.equal(error.name, 'InternalServiceError');
          assert.equal((error as Error & { $metadata: { httpStatusCode?: number } }).$metadata.httpStatusCode, 500);
          return true;
        },
      );
      const recovered = await noRetry.send(new GetSecretValueCommand({ SecretId: 'broker/clients/delta' }));
      assert.equal(recovered.SecretString, 'd');
    } finally {
      noRetry.destroy();
    }
  });

  it('replaces pending faults on each failNext call, so failNext(0) clears them', async () => {
    standIn.putSecret('broker/clients/zeta', 'z');
    standIn.failNext(5);
    standIn.failNext(0);
    const result = await client.send(new GetSecretValueCommand({ SecretId: 'broker/clients/zeta' }));
    assert.equal(result.SecretString, 'z');
    assert.equal(result.$metadata.attempts, 1);
  });

  it('answers an operation it does not implement with UnknownOperationException', async () => {
    await assert.rejects(client.send(new DescribeSecretCommand({ SecretId: 'broker/clients/alpha' })), {
      name: 'UnknownOperationException',
    });
  });

  it('refuses a request that carries no SigV4 Authorization header', async () => {
    standIn.putSecret('broker/clients/epsilon', 'e');
    const response = await fetch(standIn.endpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': 'secretsmanager.GetSecretValue' },
      body: JSON.stringify({ SecretId: 'broker/clients/epsilon' }),
    });
    assert.equal(response.status, 400);
    assert.equal(response.headers.get('x-amzn-errortype'), 'MissingAuthenticationTokenException');
    assert.doesNotMatch(await response.text(), /"e"/);
  });
});

describe('dynalite and the token table through the real DynamoDBClient', () => {
  const tableName = 'token-broker-test-tokens';
  let dynamo: LocalDynamo;
  let client: DynamoDBClient;
  let restoreEnv: () => void;

  before(async () => {
    dynamo = await startDynalite();
    await createTokenTable(dynamo.endpoint, tableName);
    restoreEnv = withEnv('AWS_ENDPOINT_URL_DYNAMODB', dynamo.endpoint);
    // No endpoint, region or credentials in code: the SDK takes them from the environment.
    client = new DynamoDBClient({});
  });

  after(async () => {
    client.destroy();
    restoreEnv();
    await dynamo.close();
  });

  it('creates the token table ACTIVE, on demand, keyed by the broker partition key as a string', async () => {
    const { Table } = await client.send(new DescribeTableCommand({ TableName: tableName }));
    assert.equal(Table?.TableStatus, 'ACTIVE');
    assert.deepEqual(Table?.KeySchema, [{ AttributeName: partitionKey, KeyType: 'HASH' }]);
    assert.deepEqual(Table?.AttributeDefinitions, [{ AttributeName: partitionKey, AttributeType: 'S' }]);
    assert.equal(Table?.BillingModeSummary?.BillingMode, 'PAY_PER_REQUEST');
  });

  it('round-trips an item with PutItem and GetItem', async () => {
    const item = {
      [partitionKey]: { S: 'client-a|system/*.read' },
      token: { S: 'opaque' },
      expiresAt: { N: '1900000000' },
    };
    await client.send(new PutItemCommand({ TableName: tableName, Item: item }));
    const { Item } = await client.send(
      new GetItemCommand({ TableName: tableName, Key: { [partitionKey]: item[partitionKey] }, ConsistentRead: true }),
    );
    assert.deepEqual(Item, item);
  });

  it('reports a table that does not exist as ResourceNotFoundException', async () => {
    await assert.rejects(client.send(new DescribeTableCommand({ TableName: 'no-such-table' })), TableNotFoundException);
  });
});

describe('captureOutput and assertNoLeak', () => {
  it('captures console output, Powertools Logger output and direct writes, then restores the streams', () => {
    const stdoutWrite = process.stdout.write;
    const stderrWrite = process.stderr.write;
    // Created before capturing starts: Powertools keeps a Console bound to the stream objects themselves.
    const logger = new Logger({ serviceName: 'capture-test' });
    const output = captureOutput();
    try {
      console.log('plain log line');
      console.error('plain error line');
      process.stdout.write('direct stdout\n');
      process.stderr.write(Buffer.from('direct stderr bytes\n'));
      logger.info('powertools line', { detail: 42 });
    } finally {
      output.restore();
    }
    const text = output.text();
    assert.match(text, /plain log line\n/);
    assert.match(text, /plain error line\n/);
    assert.match(text, /direct stdout\n/);
    assert.match(text, /direct stderr bytes\n/);
    const powertools = text.split('\n').find((line) => line.includes('powertools line'));
    assert.ok(powertools, 'Powertools Logger output was captured');
    assert.equal((JSON.parse(powertools) as Record<string, unknown>).detail, 42);
    assert.equal(process.stdout.write, stdoutWrite);
    assert.equal(process.stderr.write, stderrWrite);
  });

  it('supports overlapping captures restored in any order', () => {
    const outer = captureOutput();
    const inner = captureOutput();
    console.log('both');
    outer.restore();
    console.log('inner only');
    inner.restore();
    outer.restore();
    assert.equal(outer.text(), 'both\n');
    assert.equal(inner.text(), 'both\ninner only\n');
  });

  it('does not swallow node:test results reported while a capture is active', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'capture-reporting-'));
    try {
      const logsModule = pathToFileURL(join(import.meta.dirname, '..', 'support', 'logs.ts')).href;
      const fixture = join(dir, 'fixture.test.mts');
      await writeFile(
        fixture,
        [
          "import { it } from 'node:test';",
          "import { setTimeout as sleep } from 'node:timers/promises';",
          `import { captureOutput } from '${logsModule}';`,
          "for (let i = 0; i < 10; i += 1) it('quick', () => {});",
          "it('captures across awaits', async () => {",
          '  const output = captureOutput();',
          "  console.log('hidden');",
          '  await sleep(100);',
          '  output.restore();',
          "  if (output.text() !== 'hidden\\n') throw new Error('unexpected capture: ' + JSON.stringify(output.text()));",
          '});',
          "for (let i = 0; i < 5; i += 1) it('after', () => {});",
          '',
        ].join('\n'),
      );
      const child = spawn(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=tap', fixture], {
        cwd: join(import.meta.dirname, '..', '..'),
        // Without NODE_TEST_CONTEXT, which would make the nested `node --test` act as this run's child.
        env: { ...process.env, NODE_TEST_CONTEXT: undefined },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
        stdout += chunk;
      });
      child.stderr.resume();
      const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
      assert.match(stdout, /^# tests 16$/m);
      assert.match(stdout, /^# pass 16$/m);
      assert.doesNotMatch(stdout, /hidden/);
      assert.equal(code, 0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('assertNoLeak names a leaked value by its index, in any encoding, without printing it', () => {
    const secrets = ['client-secret-value', 'a+b/c d'];
    assertNoLeak('nothing to see here', secrets);
    for (const text of ['token=a%2Bb%2Fc%20d', 'body: a%2Bb%2Fc+d', '{"x":"a+b/c d"}']) {
      assert.throws(
        () => assertNoLeak(text, secrets),
        (error: unknown) => {
          assert.ok(error instanceof Error);
          assert.match(error.message, /secret #1/);
          assert.doesNotMatch(error.message, /secret #0/);
          assert.ok(!error.message.includes('a+b/c d') && !error.message.includes('a%2Bb'));
          return true;
        },
      );
    }
  });
});
