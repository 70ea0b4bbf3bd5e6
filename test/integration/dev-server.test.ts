import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Sha256 } from '@aws-crypto/sha256-js';
import { InvokeCommand, LambdaClient, ResourceNotFoundException } from '@aws-sdk/client-lambda';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import { listenOnLoopback } from '../../lambdas/local/listen.js';
import {
  type DevServerProcess,
  devServerPath,
  repoRoot,
  runScript,
  signedFetch,
  startDevServerProcess,
} from '../support/dev-server-process.js';
import { assertNoLeak } from '../support/logs.js';

const functionName = 'token-broker-local';
const encoder = new TextEncoder();
const decoder = new TextDecoder();

export interface RawAnswer {
  status: number;
  /** Every header line as sent, in order, duplicates included. */
  headers: [string, string][];
  body: string;
}

/**
 * Sends a request exactly as written, header lines included (fetch and node:http merge or refuse some, such
 * as a second Content-Type or a foreign Host). HTTP/1.0, so the answer is not chunked and ends with the connection.
 */
export async function rawRequest(
  port: number,
  request: { method: string; path: string; headers: [string, string][]; body?: string },
  signedBy?: { accessKeyId: string; secretAccessKey: string; region: string },
): Promise<RawAnswer> {
  const body = request.body ?? '';
  const headers = [...request.headers];
  if (signedBy !== undefined) {
    // Signs the headers as written (the first of each name: what Node hands the server), and adds the signature's.
    const signer = new SignatureV4({
      service: 'execute-api',
      region: signedBy.region,
      credentials: signedBy,
      sha256: Sha256,
    });
    const signed = await signer.sign(
      new HttpRequest({
        method: request.method,
        hostname: '127.0.0.1',
        path: request.path,
        headers: Object.fromEntries([...headers].reverse().map(([name, value]) => [name.toLowerCase(), value])),
        body,
      }),
    );
    for (const name of ['authorization', 'x-amz-date', 'x-amz-content-sha256']) {
      headers.push([name, String(signed.headers[name])]);
    }
  }
  const head = [
    `${request.method} ${request.path} HTTP/1.0`,
    ...headers.map(([name, value]) => `${name}: ${value}`),
    `Content-Length: ${Buffer.byteLength(body)}`,
  ];
  const socket = connect(port, '127.0.0.1');
  await once(socket, 'connect');
  socket.end(`${head.join('\r\n')}\r\n\r\n${body}`);
  const chunks: Buffer[] = [];
  for await (const chunk of socket) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1]);
  assert.ok(Number.isInteger(status), 'the server answered with an HTTP status line');
  const headEnd = text.indexOf('\r\n\r\n');
  const answerHeaders = text
    .slice(0, headEnd)
    .split('\r\n')
    .slice(1)
    .map((line): [string, string] => {
      const colon = line.indexOf(':');
      return [line.slice(0, colon), line.slice(colon + 1).trim()];
    });
  return { status, headers: answerHeaders, body: text.slice(headEnd + 4) };
}

interface CdkClient {
  scopes: string[];
  defaultScope?: string;
  authMethod?: string;
}
const cdkJson = JSON.parse(await readFile(new URL('../../cdk.json', import.meta.url), 'utf8')) as {
  context: { tokenBroker: { clients: Record<string, CdkClient> } };
};
const cdkClients = cdkJson.context.tokenBroker.clients;
const cdkClientName = Object.keys(cdkClients)[0] ?? 'bwell';

interface CredentialsDocument {
  wellKnownUrl: string;
  clients: Record<string, { client_id: string; client_secret?: string; private_key_jwk?: { d?: string } }>;
}

/** Every secret value of the dev server's generated credentials: client secrets and private key parts. */
function secretsOf(document: CredentialsDocument): string[] {
  return Object.values(document.clients).flatMap((client) =>
    [client.client_secret, client.private_key_jwk?.d].filter((value): value is string => value !== undefined),
  );
}

function lambdaClientFor(server: DevServerProcess, credentials = server.caller): LambdaClient {
  assert.ok(credentials !== undefined, 'the server was started with caller credentials');
  return new LambdaClient({
    endpoint: server.baseUrl,
    region: 'us-east-1',
    credentials: { accessKeyId: credentials.accessKeyId, secretAccessKey: credentials.secretAccessKey },
    maxAttempts: 1,
  });
}

function payload(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value));
}

function decoded(bytes: Uint8Array | undefined): Record<string, unknown> {
  assert.ok(bytes !== undefined, 'the invocation returned a payload');
  return JSON.parse(decoder.decode(bytes)) as Record<string, unknown>;
}

describe('npm start: the local dev server on embedded defaults', () => {
  let server: DevServerProcess;
  let lambda: LambdaClient;
  let workDir: string;
  let credentialsFile: string;
  const servedTokens: string[] = [];

  before(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'dev-server-test-'));
    credentialsFile = join(workDir, 'credentials.json');
    server = await startDevServerProcess({ TOKEN_BROKER_LOCAL_CREDENTIALS_FILE: credentialsFile });
    lambda = lambdaClientFor(server);
  });

  after(async () => {
    lambda?.destroy();
    await server?.close();
    await rm(workDir, { recursive: true, force: true });
  });

  /**
   * Proves a refused request never reached the broker: the broker logs every request it handles, naming the
   * client, before it answers. Once a later request's log line has arrived, the refused one's would have too.
   */
  async function assertNeverReachedBroker(refusedClient: string): Promise<void> {
    const sentinel = `sentinel-${randomBytes(6).toString('hex')}`;
    const answer = await server.fetch(`/clients/${sentinel}/token`, { method: 'POST' });
    assert.equal(answer.status, 404);
    await server.outputMatching(new RegExp(`"client":"${sentinel}"`));
    assert.ok(!server.output().includes(refusedClient), 'the refused request reached the broker');
  }

  it('answers POST /clients/demo/token with a token and no AWS account', async () => {
    const response = await server.fetch(`/clients/demo/token`, { method: 'POST' });
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('cache-control'), 'no-store');
    const token = (await response.json()) as Record<string, unknown>;
    assert.deepEqual(Object.keys(token).sort(), ['access_token', 'expires_in', 'scope', 'token_type']);
    assert.equal(token.scope, 'demo.read');
    servedTokens.push(token.access_token as string);

    const again = (await (await server.fetch(`/clients/demo/token`, { method: 'POST' })).json()) as Record<
      string,
      unknown
    >;
    assert.equal(again.access_token, token.access_token);
    await server.outputMatching(/"cache":"memory"/);
    assertNoLeak(server.output(), [token.access_token as string]);
  });

  it('answers bad requests with OAuth-style errors', async () => {
    const refused = await server.fetch(`/clients/demo/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ scope: 'admin' }),
    });
    assert.equal(refused.status, 400);
    assert.equal(((await refused.json()) as { error: string }).error, 'invalid_scope');
    const unknown = await server.fetch(`/clients/nobody/token`, { method: 'POST' });
    assert.equal(unknown.status, 404);
  });

  it('serves the clients of cdk.json from the embedded provider with credentials generated at start', async () => {
    const response = await server.fetch(`/clients/${cdkClientName}/token`, { method: 'POST' });
    assert.equal(response.status, 200);
    const token = (await response.json()) as Record<string, unknown>;
    assert.equal(token.scope, cdkClients[cdkClientName]?.defaultScope);
    servedTokens.push(token.access_token as string);

    const credentials = JSON.parse(await readFile(credentialsFile, 'utf8')) as CredentialsDocument;
    assert.deepEqual(
      Object.keys(credentials.clients).sort(),
      [...new Set(['demo', ...Object.keys(cdkClients)])].sort(),
    );
    assert.match(credentials.wellKnownUrl, /^http:\/\/localhost:\d+\/\.well-known\/openid-configuration$/);
    const secrets = secretsOf(credentials);
    assert.equal(new Set(secrets).size, Object.keys(credentials.clients).length, 'one distinct secret per client');
    assert.equal((await stat(credentialsFile)).mode & 0o777, 0o600);
  });

  it("invokes a client's alias through the Lambda Invoke API with the SDK's InvokeCommand", async () => {
    const overHttp = (await (
      await server.fetch(`/clients/${cdkClientName}/token`, { method: 'POST' })
    ).json()) as Record<string, unknown>;

    const output = await lambda.send(
      new InvokeCommand({
        FunctionName: functionName,
        Qualifier: cdkClientName,
        Payload: payload({ client: cdkClientName }),
      }),
    );
    assert.equal(output.StatusCode, 200);
    assert.equal(output.FunctionError, undefined);
    assert.equal(output.ExecutedVersion, '$LATEST');
    const token = decoded(output.Payload);
    // The same broker behind both entry points: the token cached by the HTTP request is served.
    assert.equal(token.access_token, overHttp.access_token);
    servedTokens.push(token.access_token as string);
    await server.outputMatching(
      new RegExp(`"invokedAs":"arn:aws:lambda:us-east-1:000000000000:function:${functionName}:${cdkClientName}"`),
    );

    const qualifiedByName = await lambda.send(
      new InvokeCommand({
        FunctionName: `${functionName}:${cdkClientName}`,
        Payload: payload({ client: cdkClientName }),
      }),
    );
    assert.equal(qualifiedByName.FunctionError, undefined);
    assert.equal(decoded(qualifiedByName.Payload).access_token, overHttp.access_token);
  });

  it("reports a refusal through another client's alias as a function error with errorType access_denied", async () => {
    const output = await lambda.send(
      new InvokeCommand({ FunctionName: functionName, Qualifier: 'demo', Payload: payload({ client: cdkClientName }) }),
    );
    assert.equal(output.StatusCode, 200);
    assert.equal(output.FunctionError, 'Unhandled');
    const error = decoded(output.Payload);
    assert.equal(error.errorType, 'access_denied');
    assert.match(String(error.errorMessage), /alias demo does not serve client/);
  });

  it('answers an unknown function or alias with ResourceNotFoundException, as Lambda does', async () => {
    for (const target of [
      { FunctionName: 'some-other-function', Qualifier: cdkClientName },
      { FunctionName: functionName, Qualifier: 'not-a-client' },
    ]) {
      await assert.rejects(
        lambda.send(new InvokeCommand({ ...target, Payload: payload({ client: cdkClientName }) })),
        (error: unknown) => {
          assert.ok(error instanceof ResourceNotFoundException, `expected ResourceNotFoundException, got ${error}`);
          assert.equal(error.$metadata.httpStatusCode, 404);
          return true;
        },
      );
    }
  });

  it('refuses a request for any Host but 127.0.0.1 or localhost on its port, before the broker', async () => {
    const refusedClient = `refused-${randomBytes(6).toString('hex')}`;
    const answer = await rawRequest(server.port, {
      method: 'POST',
      path: `/clients/${refusedClient}/token`,
      headers: [['Host', `evil.example:${server.port}`]],
    });
    assert.equal(answer.status, 403);
    assert.equal((JSON.parse(answer.body) as { error: string }).error, 'access_denied');
    await assertNeverReachedBroker(refusedClient);

    const asLocalhost = await rawRequest(
      server.port,
      { method: 'POST', path: '/clients/demo/token', headers: [['Host', `localhost:${server.port}`]] },
      server.caller,
    );
    assert.equal(asLocalhost.status, 200);
  });

  it('refuses a request carrying an Origin header, before the broker', async () => {
    const refusedClient = `refused-${randomBytes(6).toString('hex')}`;
    const answer = await rawRequest(server.port, {
      method: 'POST',
      path: `/clients/${refusedClient}/token`,
      headers: [
        ['Host', `127.0.0.1:${server.port}`],
        ['Origin', 'http://rebound.example'],
      ],
    });
    assert.equal(answer.status, 403);
    const body = JSON.parse(answer.body) as { error: string; error_description: string };
    assert.equal(body.error, 'access_denied');
    assert.match(body.error_description, /Origin/);
    await assertNeverReachedBroker(refusedClient);
  });

  it('refuses a request with two Content-Type headers, before the broker', async () => {
    const refusedClient = `refused-${randomBytes(6).toString('hex')}`;
    const answer = await rawRequest(server.port, {
      method: 'POST',
      path: `/clients/${refusedClient}/token`,
      headers: [
        ['Host', `127.0.0.1:${server.port}`],
        ['Content-Type', 'application/json'],
        ['Content-Type', 'text/plain'],
      ],
      body: '{"scope":"demo.read"}',
    });
    assert.equal(answer.status, 400);
    const body = JSON.parse(answer.body) as { error: string; error_description: string };
    assert.equal(body.error, 'invalid_request');
    assert.match(body.error_description, /Content-Type/);
    await assertNeverReachedBroker(refusedClient);
  });

  it('prints its caller key pair once, as lines to export, and writes it to the credentials file (0600)', async () => {
    const caller = server.caller;
    assert.ok(caller !== undefined);
    assert.match(caller.accessKeyId, /^AKIA[A-Z2-7]{16}$/);
    assert.ok(caller.secretAccessKey.length >= 40);
    assert.equal(server.output().split(caller.secretAccessKey).length - 1, 1, 'the secret is printed exactly once');
    const exportLine = server
      .output()
      .split('\n')
      .find((line) => line.trim().startsWith('export '));
    assert.equal(
      exportLine?.trim(),
      `export AWS_ACCESS_KEY_ID=${caller.accessKeyId} AWS_SECRET_ACCESS_KEY=${caller.secretAccessKey} ` +
        `AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_ENDPOINT_URL_LAMBDA=${server.baseUrl} ` +
        `TOKEN_BROKER_URL=${server.baseUrl}/ TOKEN_BROKER_FUNCTION=token-broker-local`,
    );
    assert.match(server.output(), /^ {2}unset AWS_PROFILE AWS_SESSION_TOKEN$/m);
    assert.equal((await stat(credentialsFile)).mode & 0o777, 0o600);
    const written = JSON.parse(await readFile(credentialsFile, 'utf8')) as { caller: { secretAccessKey: string } };
    assert.equal(written.caller.secretAccessKey, caller.secretAccessKey);
  });

  it('refuses an unsigned request, a wrong key and a bad signature with 403 access_denied, before the broker', async () => {
    const caller = server.caller;
    assert.ok(caller !== undefined);
    const refusedClient = `refused-${randomBytes(6).toString('hex')}`;
    const path = `${server.baseUrl}/clients/${refusedClient}/token`;
    const attempts = [
      fetch(path, { method: 'POST' }),
      signedFetch(path, { method: 'POST' }, { ...caller, accessKeyId: 'AKIAOTHERKEY00000000' }),
      signedFetch(path, { method: 'POST' }, { ...caller, secretAccessKey: `${caller.secretAccessKey}x` }),
      signedFetch(path, { method: 'POST' }, { ...caller, region: 'eu-west-1' }),
      signedFetch(path, { method: 'POST' }, { ...caller, service: 'lambda' }),
    ];
    const descriptions: string[] = [];
    for (const answer of await Promise.all(attempts)) {
      assert.equal(answer.status, 403);
      const body = (await answer.json()) as { error: string; error_description: string };
      assert.equal(body.error, 'access_denied');
      descriptions.push(body.error_description);
    }
    assert.match(descriptions[0] ?? '', /^Missing Authentication Token: .*SigV4-signed.*printed at start/);
    assert.match(descriptions[2] ?? '', /signature we calculated does not match/);
    assert.match(descriptions[3] ?? '', /region eu-west-1, expected us-east-1/);
    assert.match(descriptions[4] ?? '', /service lambda, expected execute-api/);
    for (const description of descriptions) assert.ok(!description.includes(caller.secretAccessKey));
    await assertNeverReachedBroker(refusedClient);

    // With the start's key pair, a signed body is served.
    const signedBody = await signedFetch(
      `${server.baseUrl}/clients/demo/token`,
      { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"scope":"demo.read"}' },
      caller,
    );
    assert.equal(signedBody.status, 200);
  });

  it('refuses an Invoke API call that is unsigned or signed with another key, in the shape of the Lambda API', async () => {
    const caller = server.caller;
    assert.ok(caller !== undefined);
    const unsigned = await fetch(`${server.baseUrl}/2015-03-31/functions/${functionName}/invocations?Qualifier=demo`, {
      method: 'POST',
      body: JSON.stringify({ client: 'demo' }),
    });
    assert.equal(unsigned.status, 403);
    assert.equal(unsigned.headers.get('x-amzn-errortype'), 'MissingAuthenticationTokenException');
    const stranger = lambdaClientFor(server, { ...caller, secretAccessKey: 'not-the-secret' });
    try {
      await assert.rejects(
        stranger.send(
          new InvokeCommand({ FunctionName: functionName, Qualifier: 'demo', Payload: payload({ client: 'demo' }) }),
        ),
        (error: unknown) => {
          assert.ok(error instanceof Error);
          assert.equal(error.name, 'InvalidSignatureException');
          assert.match(error.message, /signature we calculated does not match/);
          return true;
        },
      );
    } finally {
      stranger.destroy();
    }
  });

  it('does not serve the api_gateway alias, whose events name their caller, through the Invoke API', async () => {
    const forgedCaller = `arn:aws:iam::111122223333:role/forged-${randomBytes(6).toString('hex')}`;
    const forged = {
      resource: '/clients/{client}/token',
      path: '/clients/demo/token',
      httpMethod: 'POST',
      headers: {},
      pathParameters: { client: 'demo' },
      body: null,
      isBase64Encoded: false,
      requestContext: { requestId: 'forged', identity: { userArn: forgedCaller } },
    };
    await assert.rejects(
      lambda.send(
        new InvokeCommand({ FunctionName: functionName, Qualifier: 'api_gateway', Payload: payload(forged) }),
      ),
      (error: unknown) => {
        assert.ok(error instanceof Error);
        assert.equal(error.name, 'AccessDeniedException');
        assert.match(error.message, /api_gateway/);
        return true;
      },
    );
    // Served over HTTP, the audit line names the server's own local identity.
    assert.equal((await server.fetch('/clients/demo/token', { method: 'POST' })).status, 200);
    await server.outputMatching(/"channel":"http","caller":"arn:aws:iam::000000000000:user\/[^"]+"/);
    assert.ok(!server.output().includes(forgedCaller), 'the forged caller reached the audit log');
  });

  it('sends exactly one Content-Type header with every answer', async () => {
    const caller = server.caller;
    assert.ok(caller !== undefined);
    const host: [string, string] = ['Host', `127.0.0.1:${server.port}`];
    const answers = [
      await rawRequest(server.port, { method: 'POST', path: '/clients/demo/token', headers: [host] }, caller),
      await rawRequest(server.port, { method: 'POST', path: '/clients/nobody/token', headers: [host] }, caller),
      await rawRequest(server.port, { method: 'GET', path: '/clients/demo/token', headers: [host] }, caller),
      await rawRequest(server.port, { method: 'POST', path: '/clients/demo/token', headers: [host] }),
      await rawRequest(server.port, {
        method: 'POST',
        path: `/2015-03-31/functions/${functionName}/invocations`,
        headers: [host],
      }),
    ];
    assert.deepEqual(
      answers.map((answer) => answer.status),
      [200, 404, 405, 403, 403],
    );
    for (const answer of answers) {
      const contentTypes = answer.headers.filter(([name]) => name.toLowerCase() === 'content-type');
      assert.deepEqual(
        contentTypes.map(([, value]) => value),
        ['application/json'],
        `HTTP ${answer.status}`,
      );
    }
  });

  it('never writes a generated secret or a served token to its log', async () => {
    const credentials = JSON.parse(await readFile(credentialsFile, 'utf8')) as CredentialsDocument;
    assert.ok(servedTokens.length >= 3, 'the tests before this one were served tokens');
    await server.outputMatching(/"channel":"invoke"/);
    assertNoLeak(server.output(), [...secretsOf(credentials), ...servedTokens]);
  });
});

describe('npm start: the registry from TOKEN_BROKER_CLIENTS', () => {
  const registry = {
    smart: {
      wellKnownUrl: 'https://fhir.example.com/.well-known/openid-configuration',
      secretName: 'token-broker/smart',
      scopes: ['system/*.read', 'system/*.write'],
      defaultScope: 'system/*.read',
      authMethod: 'private_key_jwt',
    },
    basic: {
      wellKnownUrl: 'https://idp.example.com/.well-known/openid-configuration',
      secretName: 'token-broker/basic',
      scopes: ['api.read'],
      defaultScope: 'api.read',
      authMethod: 'client_secret_basic',
    },
  };
  let server: DevServerProcess;
  let workDir: string;
  let credentialsFile: string;

  before(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'dev-server-test-'));
    credentialsFile = join(workDir, 'credentials.json');
    server = await startDevServerProcess({
      TOKEN_BROKER_CLIENTS: JSON.stringify(registry),
      TOKEN_BROKER_LOCAL_CREDENTIALS_FILE: credentialsFile,
    });
  });

  after(async () => {
    await server?.close();
    await rm(workDir, { recursive: true, force: true });
  });

  it('gives a private_key_jwt client a generated key pair and registers each client with its auth method', async () => {
    const tokens: string[] = [];
    for (const [name, client] of Object.entries(registry)) {
      const response = await server.fetch(`/clients/${name}/token`, { method: 'POST' });
      assert.equal(response.status, 200, `client ${name}`);
      const token = (await response.json()) as { access_token: string; scope: string };
      assert.equal(token.scope, client.defaultScope);
      tokens.push(token.access_token);
    }
    const credentials = JSON.parse(await readFile(credentialsFile, 'utf8')) as CredentialsDocument;
    assert.equal(credentials.clients.smart?.client_secret, undefined);
    assert.equal(typeof credentials.clients.smart?.private_key_jwk?.d, 'string');
    assert.equal(typeof credentials.clients.basic?.client_secret, 'string');
    await server.outputMatching(/"client":"basic"/);
    assertNoLeak(server.output(), [...secretsOf(credentials), ...tokens]);
  });
});

describe('npm start: startup problems', () => {
  it('exits with one line naming the port and PORT=... when the port is busy', async () => {
    const occupant = createServer();
    const port = await listenOnLoopback(occupant);
    try {
      const run = await runScript(devServerPath, [], { PORT: String(port) });
      assert.notEqual(run.code, 0);
      const lines = run.stderr.trim().split('\n');
      assert.equal(lines.length, 1, `one line, got: ${run.stderr}`);
      assert.match(lines[0] ?? '', new RegExp(`port ${port}\\b`));
      assert.match(lines[0] ?? '', /PORT=\d+/);
    } finally {
      occupant.close();
    }
  });

  it('refuses to start on an invalid registry, naming the client and the field', async () => {
    const run = await runScript(devServerPath, [], {
      PORT: '0',
      TOKEN_BROKER_CLIENTS: JSON.stringify({ broken: { wellKnownUrl: 'http://idp.example.com/x', scopes: [] } }),
    });
    assert.notEqual(run.code, 0);
    // The registry came from TOKEN_BROKER_CLIENTS: that is where the problems are, every one of them.
    assert.match(run.stderr, /TOKEN_BROKER_CLIENTS\.broken\.wellKnownUrl: must be an https URL/);
    assert.match(run.stderr, /TOKEN_BROKER_CLIENTS\.broken\.secretName: is required/);
    assert.match(run.stderr, /TOKEN_BROKER_CLIENTS\.broken\.scopes: must be a non-empty array/);
    assert.doesNotMatch(run.stderr, /tokenBroker\.clients/);
    assert.doesNotMatch(run.stderr, /listening on/);
    assert.doesNotMatch(run.stderr, /^\s+at /m);
  });
});

describe('npm start -- --no-auth', () => {
  it('serves unsigned requests only when asked to, and says so with a warning', async () => {
    const server = await startDevServerProcess({}, ['--no-auth']);
    try {
      assert.equal(server.caller, undefined);
      assert.match(server.output(), /WARNING: --no-auth: any local user or process/);
      assert.doesNotMatch(server.output(), /AWS_SECRET_ACCESS_KEY=/);
      const answer = await fetch(`${server.baseUrl}/clients/demo/token`, { method: 'POST' });
      assert.equal(answer.status, 200);
    } finally {
      await server.close();
    }
  });

  it('refuses to start on an option it does not know', async () => {
    const run = await runScript(devServerPath, ['--noauth'], { PORT: '0' });
    assert.notEqual(run.code, 0);
    assert.match(run.stderr, /unknown option "--noauth"; the options are --aws and --no-auth/);
    assert.doesNotMatch(run.stderr, /listening on/);
  });
});

/** The processes of a process group, read from /proc: what is left of `npm start` once it was stopped. */
async function groupMembers(groupId: number): Promise<number[]> {
  const members: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    // pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses, so count from the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(fields[2]) === groupId) members.push(Number(entry));
  }
  return members;
}

async function portIsFree(port: number): Promise<boolean> {
  const probe = createServer();
  try {
    await listenOnLoopback(probe, port);
    return true;
  } catch {
    return false;
  } finally {
    probe.close();
  }
}

describe('stopping npm start', () => {
  for (const [how, signal, toGroup] of [
    ['Ctrl-C (SIGINT to its process group)', 'SIGINT', true],
    ['SIGTERM to the npm process alone', 'SIGTERM', false],
  ] as const) {
    it(`stops the server and everything it started on ${how}`, async () => {
      // Its own process group, as a terminal gives it; Ctrl-C signals the whole group.
      const npm = spawn('npm', ['start'], {
        cwd: repoRoot,
        env: { ...process.env, PORT: '0' },
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      npm.stdout.on('data', (chunk) => {
        output += chunk;
      });
      const exited = once(npm, 'exit');
      const port = await new Promise<number>((resolve, reject) => {
        npm.stderr.on('data', (chunk) => {
          output += chunk;
          const match = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(output);
          if (match?.[1]) resolve(Number(match[1]));
        });
        npm.once('exit', () => reject(new Error(`npm start exited: ${output}`)));
      });
      const groupId = npm.pid;
      assert.ok(groupId !== undefined);
      assert.ok((await groupMembers(groupId)).length >= 2, 'npm and the server run in the group');
      assert.equal(await portIsFree(port), false);

      process.kill(toGroup ? -groupId : groupId, signal);
      await exited;
      let left = await groupMembers(groupId);
      for (let waited = 0; left.length > 0 && waited < 10_000; waited += 100) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        left = await groupMembers(groupId);
      }
      // Whatever is left is ended here by its own id, so that a failure leaves nothing running.
      for (const pid of left) process.kill(pid, 'SIGKILL');
      assert.deepEqual(left, [], `processes of npm start still running: ${left.join(', ')}`);
      assert.equal(await portIsFree(port), true, `port ${port} is still taken`);
    });
  }
});
