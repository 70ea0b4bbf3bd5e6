import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:https';
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { DynamoDBClient, GetItemCommand } from '@aws-sdk/client-dynamodb';
import { KMSClient } from '@aws-sdk/client-kms';
import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda';
import { partitionKey } from '../../lambdas/adapters/dynamodb-schema.js';
import { KmsAssertionSigner, thumbprintOf } from '../../lambdas/adapters/kms-signer.js';
import { PowertoolsBrokerMetrics } from '../../lambdas/adapters/observability.js';
import { metricsNamespace, tokenPath } from '../../lambdas/contract.js';
import { parseClientRegistryJson } from '../../lambdas/core/config.js';
import type { Clock } from '../../lambdas/core/ports.js';
import { createBrokerFromEnvironment } from '../../lambdas/entry/compose.js';
import { createHandler } from '../../lambdas/entry/create-handler.js';
import { environmentVariables } from '../../lambdas/entry/environment.js';
import { createJwksHandler, type FunctionUrlEvent, type FunctionUrlResult } from '../../lambdas/entry/jwks.js';
import { apiGatewayEvent } from '../../lambdas/local/api-gateway-event.js';
import { listenOnLoopback } from '../../lambdas/local/listen.js';
import type { LocalKeyClient, LocalSecretClient } from '../../lambdas/local/oidc-server.js';
import { startKmsStandIn } from './kms.js';
import { apiGatewayContext, lambdaContext } from './lambda-context.js';
import { setEnvironment, startLocalParts } from './local-parts.js';
import { captureOutput } from './logs.js';
import { startScriptedIdp } from './scripted-idp.js';
import { loadTestTls } from './tls.js';

export { functionArn } from './lambda-context.js';

/** Real time, moved forward on demand: the servers keep their own clocks, the broker sees this one. */
export class ShiftedClock implements Clock {
  private offset = 0;
  now(): number {
    return Date.now() + this.offset;
  }
  advance(ms: number): void {
    this.offset += ms;
  }
  /** Every pause the broker took (backoff, Retry-After, lease polling), so tests can assert what it waited for. */
  readonly sleeps: number[] = [];
  sleep(ms: number): Promise<void> {
    this.sleeps.push(ms);
    return new Promise((resolve) => setTimeout(resolve, ms));
  }
}

/** The RFC 8707 resource servers the harness's provider knows. */
export const resourceIndicators = { r4: 'https://fhir.test/r4', dstu2: 'https://fhir.test/dstu2' } as const;

export const callerArn = 'arn:aws:iam::123456789012:role/fhir-sync';
const tableName = 'token-broker-test';

const secret = () => randomBytes(24).toString('base64url');

/**
 * The whole broker in this process against real local parts (test/support/local-parts.ts): dynalite,
 * oidc-provider over TLS with the test CA, the Secrets Manager and KMS stand-ins, reached by the real SDK clients
 * through the standard endpoint variables; besides them a provider that never answers and the hosted JWKS server.
 */
export async function startBrokerHarness() {
  const tls = loadTestTls();
  const secretClients: LocalSecretClient[] = [
    {
      clientId: 'bwell-id',
      clientSecret: secret(),
      authMethod: 'client_secret_post',
      scopes: ['system/*.read', 'system/*.write'],
    },
    { clientId: 'basic-id', clientSecret: secret(), authMethod: 'client_secret_basic', scopes: ['system/*.read'] },
    { clientId: 'revoked-id', clientSecret: secret(), authMethod: 'client_secret_post', scopes: ['system/*.read'] },
  ];
  const [bwell, basic, revoked] = secretClients as [LocalSecretClient, LocalSecretClient, LocalSecretClient];
  const smartRsa = signingKey('smart-rsa-id', 'rsa');
  const smartEc = signingKey('smart-ec-id', 'ec');
  const smartConfigured = signingKey('smart-configured-id', 'ec');
  // Epic and Entra ID: RSA-PSS, and a certificate whose thumbprint goes in the assertion's header.
  const smartPss = signingKey('smart-pss-id', 'rsa', { alg: 'PS256', x5c: [certificateDer(tls.cert)] });
  // Keys in KMS: the broker signs with kms:Sign and never holds a private key. The provider knows the RSA key
  // by its RFC 7638 thumbprint (the broker's default kid) and the EC key by a kid the registry names.
  const kms = await startKmsStandIn();
  const kmsRsa = kms.createKey('RSA_2048');
  const kmsEc = kms.createKey('ECC_NIST_P384');
  const kmsClient = (clientId: string, publicJwk: Record<string, string>, kid: string, alg: string) => ({
    clientId,
    publicJwk: { ...publicJwk, kid, alg, use: 'sig' },
    authMethod: 'private_key_jwt' as const,
    scopes: ['system/*.read'],
  });
  // Registered at the provider by jwks_uri: the hosted JWKS handler (the registry of the moment) serves its keys.
  // The current key signs; the next one is published ahead of a switch (docs/deploy.md, "Hosted JWKS").
  const hostedCurrent = kms.createKey('RSA_2048');
  const hostedNext = kms.createKey('RSA_2048');
  const jwksServer = await startJwksServer(tls, () =>
    createJwksHandler({
      clients: parseClientRegistryJson(process.env[environmentVariables.clients] ?? '{}', 'the harness registry'),
      signer: new KmsAssertionSigner(() => new KMSClient({})),
      logger,
    }),
  );
  const keyClients: LocalKeyClient[] = [
    smartRsa.client,
    smartEc.client,
    smartConfigured.client,
    smartPss.client,
    kmsClient('kms-rsa-id', kmsRsa.publicJwk, thumbprintOf(kmsRsa.publicJwk), 'PS256'),
    kmsClient('kms-ec-id', kmsEc.publicJwk, 'ec-key-1', 'ES384'),
    {
      clientId: 'kms-hosted-id',
      jwksUri: `${jwksServer.baseUrl}clients/kms-hosted/jwks.json`,
      authMethod: 'private_key_jwt',
      scopes: ['system/*.read'],
    },
  ];
  const parts = await startLocalParts({
    tableName,
    kms,
    clients: [...secretClients, ...keyClients],
    resourceServers: Object.fromEntries(
      Object.values(resourceIndicators).map((resource) => [resource, { scope: 'system/*.read system/*.write' }]),
    ),
  });
  const { oidc, secretsManager } = parts;
  // Its token endpoint never answers: for timeouts.
  const stalling = await startScriptedIdp(() => new Promise<never>(() => {}));
  const revokedSecret = secret();
  // One secret per client, as the registry requires; these clients are one client at the provider.
  const bwellSecret = JSON.stringify({ client_id: bwell.clientId, client_secret: bwell.clientSecret });
  for (const name of ['bwell', 'discovered', 'stalled', 'burst', 'outage', 'audienced', 'resourced', 'recovering']) {
    secretsManager.putSecret(`token-broker/${name}`, bwellSecret);
  }
  secretsManager.putSecret(
    'token-broker/basic',
    JSON.stringify({ client_id: basic.clientId, client_secret: basic.clientSecret }),
  );
  for (const smart of [smartRsa, smartEc, smartConfigured, smartPss]) {
    secretsManager.putSecret(
      `token-broker/${smart.client.clientId}`,
      JSON.stringify({ client_id: smart.client.clientId, private_key_jwk: smart.privateJwk }),
    );
  }
  secretsManager.putSecret('token-broker/kms-rsa', JSON.stringify({ client_id: 'kms-rsa-id' }));
  secretsManager.putSecret('token-broker/kms-ec', JSON.stringify({ client_id: 'kms-ec-id' }));
  secretsManager.putSecret('token-broker/kms-hosted', JSON.stringify({ client_id: 'kms-hosted-id' }));
  secretsManager.putSecret(
    'token-broker/revoked',
    JSON.stringify({ client_id: revoked.clientId, client_secret: revokedSecret }),
  );

  const read = ['system/*.read'];
  const clients = {
    bwell: {
      wellKnownUrl: oidc.wellKnownUrl,
      secretName: 'token-broker/bwell',
      scopes: ['system/*.read', 'system/*.write'],
      defaultScope: 'system/*.read',
      authMethod: 'client_secret_post',
    },
    basic: {
      wellKnownUrl: oidc.wellKnownUrl,
      secretName: 'token-broker/basic',
      scopes: read,
      defaultScope: 'system/*.read',
      authMethod: 'client_secret_basic',
    },
    // No authMethod: taken from discovery, which lists client_secret_post, registered so at the provider.
    discovered: {
      wellKnownUrl: oidc.wellKnownUrl,
      secretName: 'token-broker/discovered',
      scopes: ['system/*.read', 'system/*.write'],
    },
    revoked: {
      wellKnownUrl: oidc.wellKnownUrl,
      secretName: 'token-broker/revoked',
      scopes: read,
      defaultScope: 'system/*.read',
    },
    missing: { wellKnownUrl: oidc.wellKnownUrl, secretName: 'token-broker/missing', scopes: read },
    stalled: { wellKnownUrl: stalling.wellKnownUrl, secretName: 'token-broker/stalled', scopes: read },
    // SMART Backend Services: a signed JWT (RS384, ES384) instead of a shared secret.
    'smart-rsa': {
      wellKnownUrl: oidc.wellKnownUrl,
      secretName: 'token-broker/smart-rsa-id',
      scopes: read,
      authMethod: 'private_key_jwt',
    },
    'smart-ec': {
      wellKnownUrl: oidc.wellKnownUrl,
      secretName: 'token-broker/smart-ec-id',
      scopes: read,
      authMethod: 'private_key_jwt',
    },
    'smart-pss': {
      wellKnownUrl: oidc.wellKnownUrl,
      secretName: 'token-broker/smart-pss-id',
      scopes: read,
      authMethod: 'private_key_jwt',
    },
    'kms-rsa': {
      wellKnownUrl: oidc.wellKnownUrl,
      secretName: 'token-broker/kms-rsa',
      scopes: read,
      authMethod: 'private_key_jwt',
      signingKeyArn: kmsRsa.arn,
      signingAlgorithm: 'PS256',
    },
    'kms-ec': {
      wellKnownUrl: oidc.wellKnownUrl,
      secretName: 'token-broker/kms-ec',
      scopes: read,
      authMethod: 'private_key_jwt',
      signingKeyArn: kmsEc.arn,
      signingKeyId: 'ec-key-1',
    },
    'kms-hosted': {
      wellKnownUrl: oidc.wellKnownUrl,
      secretName: 'token-broker/kms-hosted',
      scopes: read,
      authMethod: 'private_key_jwt',
      signingKeyArn: hostedCurrent.arn,
      jwksKeyArns: [hostedNext.arn],
    },
    // SMART Backend Services as Epic publishes it: a smart-configuration at the FHIR base, no issuer to match.
    'smart-configured': {
      wellKnownUrl: oidc.smartConfigurationUrl,
      secretName: 'token-broker/smart-configured-id',
      scopes: read,
      authMethod: 'private_key_jwt',
    },
    // Keys of their own, so that tests counting upstream calls start cold.
    burst: { wellKnownUrl: oidc.wellKnownUrl, secretName: 'token-broker/burst', scopes: read },
    outage: { wellKnownUrl: oidc.wellKnownUrl, secretName: 'token-broker/outage', scopes: read },
    recovering: { wellKnownUrl: oidc.wellKnownUrl, secretName: 'token-broker/recovering', scopes: read },
    // Extra token-request parameters: Auth0's audience (no default) and RFC 8707's resource (with one).
    audienced: {
      wellKnownUrl: oidc.wellKnownUrl,
      secretName: 'token-broker/audienced',
      scopes: read,
      audiences: ['https://api.test/', 'https://billing.test/'],
    },
    resourced: {
      wellKnownUrl: oidc.wellKnownUrl,
      secretName: 'token-broker/resourced',
      scopes: ['system/*.read', 'system/*.write'],
      defaultScope: 'system/*.read',
      resources: [resourceIndicators.r4, resourceIndicators.dstu2],
      defaultResource: resourceIndicators.r4,
    },
  };

  setEnvironment(parts.env);
  process.env[environmentVariables.clients] = JSON.stringify(clients);
  process.env[environmentVariables.upstreamBudgetMs] = '1500';
  // Both providers name their token endpoint on another host than their issuer, as Cognito does: the deployment
  // approves them once, as tokenBroker.tokenEndpointHosts would.
  process.env[environmentVariables.tokenEndpointHosts] = [oidc.tokenEndpoint, stalling.tokenEndpoint]
    .map((url) => new URL(url).host)
    .join(',');

  const output = captureOutput();
  const clock = new ShiftedClock();
  const logger = new Logger({ serviceName: 'token-broker', logLevel: 'DEBUG' });
  /** A fresh container: its own memory, SDK clients and caches; the same table and servers. */
  const metrics = new Metrics({ serviceName: 'token-broker', namespace: metricsNamespace });
  const newContainer = () =>
    createHandler(
      createBrokerFromEnvironment(process.env, { logger, clock, metrics: new PowertoolsBrokerMetrics(metrics) }),
      logger,
      { metrics },
    );
  let handler = newContainer();
  const httpThrough = async (
    through: typeof handler,
    client: string,
    options: HttpOptions = {},
  ): Promise<HttpAnswer> => {
    const result = (await through(httpEvent(client, options), apiGatewayContext())) as APIGatewayProxyResult;
    return { ...result, json: JSON.parse(result.body) as Record<string, unknown> };
  };

  const context = (qualifier?: string) => lambdaContext(qualifier);

  return {
    oidc,
    secretsManager,
    kms,
    kmsKeys: { rsa: kmsRsa.arn, ec: kmsEc.arn, hostedCurrent: hostedCurrent.arn, hostedNext: hostedNext.arn },
    jwksServer,
    clock,
    output,
    /** Every value that must never appear in a log line. */
    secrets: () => [
      bwell.clientSecret,
      basic.clientSecret,
      revoked.clientSecret,
      revokedSecret,
      parts.sealingKey,
      ...[smartRsa, smartEc, smartConfigured, smartPss].flatMap((smart) =>
        [smart.privateJwk.d, smart.privateJwk.p].filter((part) => part !== undefined),
      ),
    ],
    restartContainer() {
      handler = newContainer();
    },
    http: (client: string, options?: HttpOptions) => httpThrough(handler, client, options),
    /** Another container that lives beside the current one: its own memory, the same table. */
    otherContainer() {
      const other = newContainer();
      return {
        http: (client: string, options?: HttpOptions) => httpThrough(other, client, options),
        invoke: (event: unknown, qualifier?: string) => other(event, context(qualifier)),
      };
    },
    /** Runs `work` against a fresh container whose registry has one more client (on the same provider). */
    async withExtraClient<T>(
      name: string,
      client: Record<string, unknown>,
      work: (http: (client: string, options?: HttpOptions) => Promise<HttpAnswer>) => Promise<T>,
    ): Promise<T> {
      const registry = process.env[environmentVariables.clients] as string;
      // The bwell credentials again, under a secret of the extra client's own, as the registry requires.
      const own = client.secretName === 'token-broker/bwell' ? { secretName: `token-broker/${name}` } : {};
      if (own.secretName !== undefined) secretsManager.putSecret(own.secretName, bwellSecret);
      process.env[environmentVariables.clients] = JSON.stringify({
        ...JSON.parse(registry),
        // A client with a fixed tokenEndpoint has no metadata to discover.
        [name]: {
          ...(client.tokenEndpoint === undefined ? { wellKnownUrl: oidc.wellKnownUrl } : {}),
          ...client,
          ...own,
        },
      });
      try {
        const extended = newContainer();
        return await work((clientName, options) => httpThrough(extended, clientName, options));
      } finally {
        process.env[environmentVariables.clients] = registry;
      }
    },
    async invoke(event: unknown, qualifier?: string) {
      return handler(event, context(qualifier));
    },
    /** Through a second container, leaving the current one's memory as it is. */
    async invokeOther(event: unknown, qualifier?: string) {
      return newContainer()(event, context(qualifier));
    },
    async storedItem(cacheKey: string) {
      const raw = new DynamoDBClient({});
      const output = await raw.send(
        new GetItemCommand({ TableName: tableName, Key: { [partitionKey]: { S: cacheKey } }, ConsistentRead: true }),
      );
      raw.destroy();
      return output.Item;
    },
    async close() {
      output.restore();
      await Promise.all([parts.close(), stalling.close(), jwksServer.close()]);
    },
  };
}

/**
 * A fresh key pair for a private_key_jwt client: RS384 (RSA) or ES384 (EC P-384), or the `alg` given; with
 * `x5c`, a certificate chain on both halves (the provider finds the key by its x5t#S256 as well as its kid).
 */
function signingKey(clientId: string, kind: 'rsa' | 'ec', options: { alg?: string; x5c?: string[] } = {}) {
  const { privateKey, publicKey } =
    kind === 'rsa'
      ? generateKeyPairSync('rsa', { modulusLength: 2048 })
      : generateKeyPairSync('ec', { namedCurve: 'P-384' });
  const kid = randomBytes(6).toString('hex');
  const alg = options.alg ?? (kind === 'rsa' ? 'RS384' : 'ES384');
  const chain = options.x5c === undefined ? {} : { x5c: options.x5c };
  const privateJwk = { ...privateKey.export({ format: 'jwk' }), kid, alg, ...chain };
  const client: LocalKeyClient = {
    clientId,
    publicJwk: { ...publicKey.export({ format: 'jwk' }), kid, alg, use: 'sig', ...chain },
    authMethod: 'private_key_jwt',
    scopes: ['system/*.read'],
  };
  return { client, privateJwk };
}

/**
 * The hosted JWKS function behind https with the test CA, as a Function URL serves it: each request becomes a
 * payload-2.0 event for the handler `current()` returns at that moment, so a test can redeploy between requests.
 * `baseUrl` is `https://localhost:<port>/`, the function URL's stand-in with its trailing slash.
 */
async function startJwksServer(
  tls: { key: string; cert: string },
  current: () => (event: FunctionUrlEvent) => Promise<FunctionUrlResult>,
) {
  let requests = 0;
  const server = createServer({ key: tls.key, cert: tls.cert }, (req, res) => {
    requests += 1;
    const event: FunctionUrlEvent = {
      rawPath: new URL(req.url ?? '/', 'https://localhost').pathname,
      requestContext: { http: { method: req.method ?? 'GET' } },
    };
    current()(event).then(
      (result) => {
        res.writeHead(result.statusCode, result.headers);
        res.end(result.body);
      },
      () => {
        res.writeHead(502);
        res.end();
      },
    );
  });
  const port = await listenOnLoopback(server);
  return {
    baseUrl: `https://localhost:${port}/`,
    /** Requests received, whatever their answer. */
    requests: () => requests,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A PEM certificate's DER, base64: an x5c entry. */
export function certificateDer(pem: string): string {
  return pem.replace(/-----(BEGIN|END) CERTIFICATE-----/g, '').replace(/\s+/g, '');
}

export type BrokerHarness = Awaited<ReturnType<typeof startBrokerHarness>>;

export interface HttpOptions {
  body?: string | null;
  method?: string;
  caller?: string | null;
  headers?: Record<string, string>;
}

export type HttpAnswer = APIGatewayProxyResult & { json: Record<string, unknown> };

export function httpEvent(client: string, options: HttpOptions = {}): APIGatewayProxyEvent {
  return apiGatewayEvent({
    method: options.method ?? 'POST',
    path: tokenPath(encodeURIComponent(client)),
    headers: { 'content-type': 'application/json', ...options.headers },
    body: options.body ?? null,
    callerArn: options.caller === undefined ? callerArn : options.caller,
  });
}
