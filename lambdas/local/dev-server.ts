import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { userInfo } from 'node:os';
import { Logger } from '@aws-lambda-powertools/logger';
import type { APIGatewayProxyResult, Context } from 'aws-lambda';
import type { SecretSource } from '../core/ports.js';
import { createBrokerFromEnvironment } from '../entry/compose.js';
import { createHandler } from '../entry/create-handler.js';
import { environmentVariables } from '../entry/environment.js';
import { apiGatewayEvent } from './api-gateway-event.js';
import { createTokenTable, startDynalite } from './dynalite.js';
import { startOidcServer } from './oidc-server.js';
import { StaticSecretSource } from './static-secrets.js';

/**
 * `npm start`: the broker on http://127.0.0.1:8787, fed API Gateway-shaped events by a plain HTTP server.
 * By default everything is embedded (dynalite in memory, a local OpenID provider, a generated client
 * secret); with --aws it uses the real table, Secrets Manager and identity providers of the account.
 */
const port = Number(process.env.PORT ?? 8787);
const useAws = process.argv.includes('--aws');
const maxBodyBytes = 64 * 1024;
// Powertools reads the level from POWERTOOLS_LOG_LEVEL / AWS_LAMBDA_LOG_LEVEL.
const logger = new Logger({ serviceName: 'token-broker' });

async function embeddedDefaults(): Promise<{ secrets: SecretSource; close: () => Promise<void> }> {
  const dynamo = await startDynalite();
  await createTokenTable(dynamo.endpoint, 'token-broker-local');
  const demo = { clientId: 'demo', clientSecret: randomBytes(24).toString('base64url') };
  const oidc = await startOidcServer({
    clients: [{ ...demo, authMethod: 'client_secret_post', scopes: ['demo.read', 'demo.write'] }],
  });
  process.env.AWS_ENDPOINT_URL_DYNAMODB = dynamo.endpoint;
  process.env.AWS_REGION ??= 'us-east-1';
  process.env.AWS_ACCESS_KEY_ID ??= 'local';
  process.env.AWS_SECRET_ACCESS_KEY ??= 'local';
  process.env[environmentVariables.tableName] = 'token-broker-local';
  process.env[environmentVariables.clients] = JSON.stringify({
    demo: {
      wellKnownUrl: oidc.wellKnownUrl,
      secretName: 'local/demo',
      scopes: ['demo.read', 'demo.write'],
      defaultScope: 'demo.read',
    },
  });
  return {
    secrets: new StaticSecretSource(new Map([['local/demo', demo]])),
    close: async () => {
      await Promise.all([oidc.close(), dynamo.close()]);
    },
  };
}

/** Against AWS: the registry comes from TOKEN_BROKER_CLIENTS or cdk.json, the table from TOKEN_BROKER_TABLE. */
function awsDefaults(): void {
  if (!process.env[environmentVariables.clients]) {
    const cdkJson = JSON.parse(readFileSync(new URL('../../cdk.json', import.meta.url), 'utf8'));
    process.env[environmentVariables.clients] = JSON.stringify(cdkJson.context.tokenBroker.clients);
  }
}

async function readBody(request: IncomingMessage): Promise<string | null> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    size += (chunk as Buffer).length;
    if (size > maxBodyBytes) throw new Error('body too large');
    chunks.push(chunk as Buffer);
  }
  return size === 0 ? null : Buffer.concat(chunks).toString('utf8');
}

if (useAws) awsDefaults();
const local = useAws ? undefined : await embeddedDefaults();
const broker = createBrokerFromEnvironment(process.env, {
  logger,
  allowLoopbackHttp: !useAws,
  ...(local === undefined ? {} : { secrets: local.secrets }),
});
const handler = createHandler(broker, logger);
const callerArn = `arn:aws:iam::000000000000:user/${userInfo().username}`;
const context = {
  functionName: 'token-broker-local',
  invokedFunctionArn: 'arn:aws:lambda:local:000000000000:function:token-broker-local',
  awsRequestId: 'local',
  memoryLimitInMB: '256',
  getRemainingTimeInMillis: () => 15_000,
} as Context;

const server = createServer(async (request, response) => {
  let answer: APIGatewayProxyResult;
  try {
    const url = new URL(request.url ?? '/', 'http://127.0.0.1');
    const headers = Object.fromEntries(
      Object.entries(request.headers).map(([name, value]) => [
        name,
        Array.isArray(value) ? value.join(', ') : (value ?? ''),
      ]),
    );
    const event = apiGatewayEvent({
      method: request.method ?? 'GET',
      path: url.pathname,
      headers,
      body: await readBody(request),
      callerArn,
    });
    answer = (await handler(event, {
      ...context,
      awsRequestId: randomBytes(8).toString('hex'),
    })) as APIGatewayProxyResult;
  } catch {
    answer = {
      statusCode: 413,
      body: JSON.stringify({
        error: 'invalid_request',
        error_description: `the body is larger than ${maxBodyBytes} bytes`,
      }),
    };
  }
  response.writeHead(answer.statusCode, { 'content-type': 'application/json', ...answer.headers });
  response.end(answer.body);
});

server.listen(port, '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo;
  const mode = useAws ? 'AWS (real table, Secrets Manager and identity providers)' : 'embedded defaults';
  process.stderr.write(
    `token-broker listening on http://127.0.0.1:${port} with ${mode}\n` +
      (useAws ? '' : `try: curl -X POST http://127.0.0.1:${port}/clients/demo/token\n`),
  );
});

const stop = () => {
  server.close();
  void local?.close().finally(() => process.exit(0));
  if (local === undefined) process.exit(0);
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
