import { randomBytes } from 'node:crypto';
import { chmodSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { userInfo } from 'node:os';
import { Logger } from '@aws-lambda-powertools/logger';
import type { APIGatewayProxyResult, Context } from 'aws-lambda';
import { adminAliasOf, apiGatewayAliasName, environmentVariables, functionTimeoutMs, tokenPath } from '../contract.js';
import { ConfigError, parseClientRegistryJson } from '../core/config.js';
import type { SealingKeySource, SecretSource } from '../core/ports.js';
import { createBrokerFromEnvironment } from '../entry/compose.js';
import { createHandler } from '../entry/create-handler.js';
import { apiGatewayEvent } from './api-gateway-event.js';
import {
  type CallerRefusal,
  callerEnvironment,
  callerRefusal,
  exportLines,
  generateCallerCredentials,
  type LocalCallerCredentials,
} from './caller-auth.js';
import { createTokenTable, startDynalite } from './dynalite.js';
import {
  applyRuntimeSettings,
  credentialsDocument,
  demoClientName,
  embeddedClients,
  embeddedRegistry,
  embeddedResourceServers,
  localDeployment,
  localSecretName,
} from './embedded-clients.js';
import {
  isInvokePath,
  type LambdaApiAnswer,
  lambdaApiError,
  localFunctionArn,
  localFunctionName,
  localRegion,
  parseInvocation,
  runInvocation,
} from './lambda-invoke-api.js';
import { listenOnLoopback } from './listen.js';
import { startOidcServer } from './oidc-server.js';
import { refusalOf } from './request-guard.js';
import { StaticSealingKeySource, StaticSecretSource } from './static-secrets.js';

/**
 * `npm start`: the broker on http://127.0.0.1:8787, fed API Gateway-shaped events by a plain HTTP server, and
 * the Lambda Invoke API on the same port (function `token-broker-local`, an alias per client).
 * By default everything is embedded: dynalite in memory, a local OpenID provider, and the clients of cdk.json
 * (or TOKEN_BROKER_CLIENTS) plus `demo`, registered there with credentials generated at start. With --aws it
 * uses the real table, Secrets Manager and identity providers of the account.
 * Every request must be SigV4-signed with an access key pair made at start and printed once (caller-auth.ts),
 * unless it is started with --no-auth. TOKEN_BROKER_LOCAL_CREDENTIALS_FILE, when set, is where that key pair
 * and the generated client credentials are written (mode 0600).
 */
const options = process.argv.slice(2);
for (const option of options) {
  if (option !== '--aws' && option !== '--no-auth') {
    exitWith(`unknown option ${JSON.stringify(option).slice(0, 80)}; the options are --aws and --no-auth`);
  }
}
const useAws = options.includes('--aws');
const callerCredentials: LocalCallerCredentials | undefined = options.includes('--no-auth')
  ? undefined
  : generateCallerCredentials();
const startCommand = useAws ? 'npm run start:aws' : 'npm start';
const requestedPort = parsePort(process.env.PORT);
const maxBodyBytes = 64 * 1024;
const cdkJsonUrl = new URL('../../cdk.json', import.meta.url);
// Powertools reads the level from POWERTOOLS_LOG_LEVEL / AWS_LAMBDA_LOG_LEVEL.
const logger = new Logger({ serviceName: 'token-broker' });

/** A startup problem is the developer's to fix: one message, no stack trace. */
function exitWith(message: string): never {
  process.stderr.write(`token-broker: ${message}\n`);
  process.exit(1);
}

function parsePort(value: string | undefined): number {
  if (value === undefined || value === '') return 8787;
  const port = Number(value);
  if (!/^\d+$/.test(value) || port > 65_535) exitWith(`PORT must be a port number (0 to 65535), got ${value}`);
  return port;
}

interface EmbeddedParts {
  secrets: SecretSource;
  sealingKeys: SealingKeySource;
  clientNames: string[];
  issuer: string;
  /** The generated client credentials, for TOKEN_BROKER_LOCAL_CREDENTIALS_FILE. */
  credentials: ReturnType<typeof credentialsDocument>;
  close: () => Promise<void>;
}

async function embeddedDefaults(): Promise<EmbeddedParts> {
  const deployment = localDeployment(process.env, cdkJsonUrl);
  applyRuntimeSettings(process.env, deployment);
  const clients = embeddedClients({ ...deployment.clients });
  const dynamo = await startDynalite();
  await createTokenTable(dynamo.endpoint, 'token-broker-local');
  const oidc = await startOidcServer({
    clients: clients.map((client) => client.provider),
    resourceServers: embeddedResourceServers(clients),
  });
  process.env.AWS_ENDPOINT_URL_DYNAMODB = dynamo.endpoint;
  process.env.AWS_REGION ??= 'us-east-1';
  process.env.AWS_ACCESS_KEY_ID ??= 'local';
  process.env.AWS_SECRET_ACCESS_KEY ??= 'local';
  process.env[environmentVariables.tableName] = 'token-broker-local';
  process.env[environmentVariables.clients] = JSON.stringify(embeddedRegistry(clients, oidc));
  return {
    secrets: new StaticSecretSource(
      new Map(clients.map((client) => [localSecretName(client.name), client.credentials])),
    ),
    // Random per start, like the stack's generated secret: the in-memory table does not outlive it either.
    sealingKeys: new StaticSealingKeySource(randomBytes(32)),
    clientNames: clients.map((client) => client.name),
    issuer: oidc.issuer,
    credentials: credentialsDocument(clients, oidc.wellKnownUrl),
    close: async () => {
      await Promise.all([oidc.close(), dynamo.close()]);
    },
  };
}

/**
 * Against AWS: the registry comes from TOKEN_BROKER_CLIENTS or cdk.json, the approved token endpoint hosts from
 * TOKEN_BROKER_TOKEN_ENDPOINT_HOSTS or cdk.json (as the stack hands them to the function), the table from
 * TOKEN_BROKER_TABLE, the sealing key from the secret TOKEN_BROKER_SEALING_SECRET_ARN names (both stack outputs).
 */
function awsDefaults(): void {
  const deployment = localDeployment(process.env, cdkJsonUrl);
  process.env[environmentVariables.clients] ||= JSON.stringify(deployment.clients);
  applyRuntimeSettings(process.env, deployment);
}

class BodyTooLarge extends Error {}

async function readBody(request: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    size += (chunk as Buffer).length;
    if (size > maxBodyBytes) throw new BodyTooLarge();
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

const server = createServer((request, response) => {
  void serve(request, response);
});
// Bound before anything is started, so a busy port fails at once and alone.
let port: number;
try {
  port = await listenOnLoopback(server, requestedPort);
} catch (error) {
  const code = (error as NodeJS.ErrnoException).code;
  const other = requestedPort === 65_535 ? 8787 : requestedPort + 1;
  if (code === 'EADDRINUSE') {
    exitWith(`port ${requestedPort} is already in use (another ${startCommand}?); try PORT=${other} ${startCommand}`);
  }
  if (code === 'EACCES') exitWith(`port ${requestedPort} needs privileges; try PORT=8787 ${startCommand}`);
  throw error;
}

let local: EmbeddedParts | undefined;
let handler: ReturnType<typeof createHandler>;
let clientNames: string[];
try {
  if (useAws) awsDefaults();
  local = useAws ? undefined : await embeddedDefaults();
  const broker = createBrokerFromEnvironment(process.env, {
    logger,
    allowLoopbackHttp: !useAws,
    ...(local === undefined ? {} : { secrets: local.secrets, sealingKeys: local.sealingKeys }),
  });
  handler = createHandler(broker, logger);
  clientNames = Object.keys(
    parseClientRegistryJson(process.env[environmentVariables.clients], environmentVariables.clients, {
      allowLoopbackHttp: !useAws,
    }),
  );
} catch (error) {
  if (error instanceof ConfigError) exitWith(error.message);
  throw error;
}
// The audit log's caller: whoever holds this start's key pair, which only the user who started it was shown.
const callerArn = `arn:aws:iam::000000000000:user/${userInfo().username}`;
const context = {
  functionName: localFunctionName,
  invokedFunctionArn: `${localFunctionArn}:${apiGatewayAliasName}`,
  awsRequestId: 'local',
  memoryLimitInMB: '256',
  getRemainingTimeInMillis: () => functionTimeoutMs,
} as Context;
// The aliases the Invoke API serves: one per client and one admin alias per client. API Gateway's alias is
// fed only by the HTTP routes, which set the caller identity themselves.
const aliases = new Set(clientNames.flatMap((name) => [name, adminAliasOf(name)]));

interface Answer {
  statusCode: number;
  headers?: Record<string, string | number | boolean> | undefined;
  body: string;
}

function oauthError(statusCode: number, error: string, description: string, headers: Answer['headers'] = {}): Answer {
  return { statusCode, headers, body: JSON.stringify({ error, error_description: description }) };
}

/** One header per name: the handler's `Content-Type` and the default `content-type` are the same header. */
function send(response: ServerResponse, answer: Answer): void {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  for (const [name, value] of Object.entries(answer.headers ?? {})) headers[name.toLowerCase()] = String(value);
  response.writeHead(answer.statusCode, headers);
  response.end(answer.body);
}

function refusedCaller(refusal: CallerRefusal, invoke: boolean): Answer {
  if (!invoke) return oauthError(403, 'access_denied', refusal.description);
  // The Invoke API answers in Lambda's shape, which the SDKs read; these are Lambda's names for the two cases.
  const errorType = refusal.unsigned ? 'MissingAuthenticationTokenException' : 'InvalidSignatureException';
  return lambdaApiError(403, errorType, refusal.description);
}

async function serve(request: IncomingMessage, response: ServerResponse): Promise<void> {
  const refusal = refusalOf(request, port);
  if (refusal !== undefined) {
    // The body is left unread: close the connection rather than parse what follows as a request.
    send(response, oauthError(refusal.status, refusal.error, refusal.description, { connection: 'close' }));
    return;
  }
  const url = new URL(request.url ?? '/', 'http://127.0.0.1');
  const invoke = isInvokePath(url.pathname);
  let bytes: Buffer;
  try {
    bytes = await readBody(request);
  } catch {
    send(
      response,
      invoke
        ? lambdaApiError(413, 'RequestTooLargeException', `Request must be smaller than ${maxBodyBytes} bytes`)
        : oauthError(413, 'invalid_request', `the body is larger than ${maxBodyBytes} bytes`, { connection: 'close' }),
    );
    return;
  }
  if (callerCredentials !== undefined) {
    const refusal = await callerRefusal(
      { method: request.method ?? 'GET', target: request.url ?? '/', headers: request.headers, body: bytes },
      invoke ? 'invoke' : 'http',
      callerCredentials,
    );
    if (refusal !== undefined) {
      send(response, refusedCaller(refusal, invoke));
      return;
    }
  }
  const body = bytes.length === 0 ? null : bytes.toString('utf8');
  const requestId = randomBytes(8).toString('hex');
  let answer: Answer;
  try {
    answer = invoke
      ? await invokeFunction(request, url, body, requestId)
      : await httpRequest(request, url, body, requestId);
  } catch {
    answer = oauthError(500, 'server_error', 'the local server failed to run the handler');
  }
  send(response, answer);
}

async function httpRequest(request: IncomingMessage, url: URL, body: string | null, requestId: string) {
  const headers = Object.fromEntries(
    Object.entries(request.headers).map(([name, value]) => [
      name,
      Array.isArray(value) ? value.join(', ') : (value ?? ''),
    ]),
  );
  const event = apiGatewayEvent({ method: request.method ?? 'GET', path: url.pathname, headers, body, callerArn });
  return (await handler(event, { ...context, awsRequestId: requestId })) as APIGatewayProxyResult;
}

async function invokeFunction(
  request: IncomingMessage,
  url: URL,
  body: string | null,
  requestId: string,
): Promise<LambdaApiAnswer> {
  const invocationType = request.headersDistinct['x-amz-invocation-type']?.[0];
  const parsed = parseInvocation({ method: request.method ?? 'GET', url, body, invocationType }, aliases);
  if ('refused' in parsed) return parsed.refused;
  return runInvocation(
    parsed.invocation,
    (event, invokedFunctionArn) => handler(event, { ...context, invokedFunctionArn, awsRequestId: requestId }),
    requestId,
  );
}

const base = `http://127.0.0.1:${port}`;
const environment =
  callerCredentials === undefined ? undefined : callerEnvironment(callerCredentials, base, localFunctionName);
const credentialsFile = process.env.TOKEN_BROKER_LOCAL_CREDENTIALS_FILE;
if (credentialsFile) {
  const document = {
    caller: callerCredentials === undefined ? null : { ...callerCredentials, environment },
    ...local?.credentials,
  };
  // Written before the banner, so that whoever waits for "listening on" finds it complete.
  writeFileSync(credentialsFile, `${JSON.stringify(document, null, 2)}\n`, { mode: 0o600 });
  // The mode above applies only to a file it creates.
  chmodSync(credentialsFile, 0o600);
}
const example = clientNames.includes(demoClientName) ? demoClientName : (clientNames[0] ?? 'bwell');
const mode = useAws ? 'AWS (real table, Secrets Manager and identity providers)' : 'embedded defaults';
const signing = `--aws-sigv4 aws:amz:${localRegion}:execute-api --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" `;
const banner = [
  `token-broker listening on ${base} with ${mode}`,
  local === undefined
    ? `clients: ${clientNames.join(', ')}`
    : `clients: ${clientNames.join(', ')} (credentials generated at start; OpenID provider ${local.issuer})`,
  `Lambda Invoke API at ${base}: function ${localFunctionName}, region ${localRegion}, one alias per client`,
  ...(environment === undefined
    ? [
        'WARNING: --no-auth: any local user or process, and any program one of them runs, can fetch tokens here',
        ...(useAws ? [] : [`try: curl -X POST ${base}${tokenPath(example)}`]),
      ]
    : [
        'Requests must be SigV4-signed with this key pair, made for this start and shown only here. In the shell',
        'you call from, paste:',
        ...exportLines(environment).map((line) => `  ${line}`),
        ...(useAws ? [] : [`try: curl ${signing}-X POST ${base}${tokenPath(example)}`]),
      ]),
  'stop: Ctrl-C (or kill the npm process)',
];
process.stderr.write(`${banner.join('\n')}\n`);

let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  server.close();
  server.closeAllConnections();
  // Whatever does not close in time is not worth keeping the port and the terminal for.
  setTimeout(() => process.exit(0), 3_000).unref();
  void (local?.close() ?? Promise.resolve()).finally(() => process.exit(0));
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
process.on('SIGHUP', stop);
