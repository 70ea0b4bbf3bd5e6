/**
 * The broker against real local parts with the fault proxy (test/support/fault-proxy.ts) between it and
 * oidc-provider: every client's wellKnownUrl names the proxy, so discovery and every token request go
 * through it and can be made to fail. Also dynalite, and the Secrets Manager stand-in (test/support/local-parts.ts).
 *
 * Each test builds containers of its own (`newContainer()`: own memory, SDK clients, discovery cache, and a
 * clock of its own that it may move forward without disturbing the other tests) and asks for clients that no
 * container asked for yet (`coldClient()`), so that nothing cached by an earlier test answers for it.
 *
 * The provider's clients are fixed when it starts, so a secret is rotated at the provider by restarting it on
 * the same port with the new secret (`rotateAtProvider`); the proxy keeps forwarding to that port.
 */
import { randomBytes } from 'node:crypto';
import { Logger } from '@aws-lambda-powertools/logger';
import type { APIGatewayProxyResult } from 'aws-lambda';
import type { BrokerMetrics } from '../../lambdas/core/ports.js';
import { createBrokerFromEnvironment } from '../../lambdas/entry/compose.js';
import { createHandler } from '../../lambdas/entry/create-handler.js';
import { environmentVariables } from '../../lambdas/entry/environment.js';
import { createTokenTable, type LocalDynamo, startDynalite } from '../../lambdas/local/dynalite.js';
import type { LocalSecretClient } from '../../lambdas/local/oidc-server.js';
import { httpEvent, ShiftedClock } from './broker-harness.js';
import { CountingMetrics } from './fakes.js';
import { type FaultProxy, startFaultProxy } from './fault-proxy.js';
import { apiGatewayContext } from './lambda-context.js';
import { setEnvironment, startLocalParts } from './local-parts.js';

export const tableName = 'token-broker-faults';
/** Small, so that hangs and exhausted retries end fast; the tests measure against it. */
export const upstreamBudgetMs = 1500;
export const readScope = 'system/*.read';
export const writeScope = 'system/*.write';
const coldClientCount = 40;

/** A random value that cannot occur in a log by chance (so that leak checks do not match by accident). */
export const randomValue = (prefix = '') => `${prefix}${randomBytes(24).toString('base64url')}`;

export interface Answer {
  statusCode: number;
  headers: Record<string, unknown>;
  body: string;
  json: Record<string, unknown>;
}

export interface FaultsContainer {
  clock: ShiftedClock;
  metrics: CountingMetrics;
  /** POST /clients/{client}/token through API Gateway's event shape; records the token for the leak checks. */
  http(client: string, scope?: string): Promise<Answer>;
}

export async function startFaultsHarness() {
  const both = [readScope, writeScope];
  const provider: LocalSecretClient[] = [
    { clientId: 'faults-main', clientSecret: randomValue(), authMethod: 'client_secret_post', scopes: both },
    { clientId: 'faults-rotating', clientSecret: randomValue(), authMethod: 'client_secret_post', scopes: both },
    { clientId: 'faults-bounded', clientSecret: randomValue(), authMethod: 'client_secret_post', scopes: both },
    { clientId: 'faults-pending', clientSecret: randomValue(), authMethod: 'client_secret_post', scopes: both },
    { clientId: 'faults-lagging', clientSecret: randomValue(), authMethod: 'client_secret_post', scopes: both },
  ];
  /** Every secret value ever used, for the leak checks. */
  const secretValues = provider.map((client) => client.clientSecret);
  // The provider's clients are read again when it restarts (`rotateAtProvider`).
  const parts = await startLocalParts({ tableName, clients: provider });
  const { dynamo, secretsManager } = parts;
  let earlierTokenRequests = 0;
  const proxy: FaultProxy = await startFaultProxy(parts.oidc);
  const secretJson = (client: LocalSecretClient) =>
    JSON.stringify({ client_id: client.clientId, client_secret: client.clientSecret });
  const secretNames = {
    'faults-main': 'faults/main',
    'faults-rotating': 'faults/rotating',
    'faults-bounded': 'faults/bounded',
    'faults-pending': 'faults/pending',
    'faults-lagging': 'faults/lagging',
  };
  for (const client of provider)
    secretsManager.putSecret(secretNames[client.clientId as keyof typeof secretNames], secretJson(client));
  secretValues.push(parts.sealingKey);

  const client = (secretName: string, extra: Record<string, unknown> = {}) => ({
    wellKnownUrl: proxy.wellKnownUrl,
    secretName,
    scopes: both,
    defaultScope: readScope,
    authMethod: 'client_secret_post',
    ...extra,
  });
  const clients: Record<string, unknown> = {
    'default-expiry': client('faults/main', { defaultExpiresIn: 900 }),
    rotating: client('faults/rotating'),
    bounded: client('faults/bounded'),
    pending: client('faults/pending'),
    lagging: client('faults/lagging'),
    'fields-missing': client('faults/fields-missing'),
    'not-json': client('faults/not-json'),
    // Two token requests an hour: the issuance budget.
    budgeted: client('faults/budgeted', { maxTokenRequestsPerHour: 2 }),
  };
  const mainCredentials = provider.find((entry) => entry.clientId === 'faults-main');
  if (mainCredentials !== undefined) secretsManager.putSecret('faults/budgeted', secretJson(mainCredentials));
  const coldNames: string[] = [];
  for (let i = 1; i <= coldClientCount; i++) {
    const name = `cold-${String(i).padStart(2, '0')}`;
    coldNames.push(name);
    // The main client's credentials under a secret of its own, as the registry requires.
    const mainClient = provider.find((entry) => entry.clientId === 'faults-main');
    if (mainClient !== undefined) secretsManager.putSecret(`faults/${name}`, secretJson(mainClient));
    clients[name] = client(`faults/${name}`);
  }

  setEnvironment(parts.env);
  process.env[environmentVariables.clients] = JSON.stringify(clients);
  process.env[environmentVariables.upstreamBudgetMs] = String(upstreamBudgetMs);
  // The proxy names its token endpoint on another host than its issuer, as Cognito does: approved for the deployment.
  process.env[environmentVariables.tokenEndpointHosts] = new URL(proxy.tokenEndpoint).host;
  delete process.env[environmentVariables.secretMaxAgeSeconds];

  /** Every access token a caller received or the test injected, for the leak checks. */
  const tokens = new Set<string>();

  const context = () => apiGatewayContext('faults');

  return {
    proxy,
    secretsManager,
    dynamo,
    /** A client no container asked for yet: its cache key is cold in memory and in the table. */
    coldClient(): string {
      const name = coldNames.shift();
      if (name === undefined) throw new Error(`more than ${coldClientCount} cold clients used; add some`);
      return name;
    },
    /** A fresh Lambda container with a clock of its own. */
    newContainer(options: { metrics?: BrokerMetrics } = {}): FaultsContainer {
      const clock = new ShiftedClock();
      const metrics = new CountingMetrics();
      const logger = new Logger({ serviceName: 'token-broker', logLevel: 'DEBUG' });
      const broker = createBrokerFromEnvironment(process.env, { logger, clock, metrics: options.metrics ?? metrics });
      const handler = createHandler(broker, logger);
      return {
        clock,
        metrics,
        async http(name, scope) {
          const event = httpEvent(name, { body: scope === undefined ? null : JSON.stringify({ scope }) });
          const result = (await handler(event, context())) as APIGatewayProxyResult;
          const json = JSON.parse(result.body) as Record<string, unknown>;
          if (typeof json.access_token === 'string' && json.access_token !== '') tokens.add(json.access_token);
          return { statusCode: result.statusCode, headers: { ...result.headers }, body: result.body, json };
        },
      };
    },
    /** POST requests that reached oidc-provider's token endpoint (across restarts). */
    upstreamTokenRequests: () => earlierTokenRequests + parts.oidc.tokenRequests(),
    /** The provider's client `clientId` now accepts only `newSecret` (a restart on the same port). */
    async rotateAtProvider(clientId: string, newSecret: string) {
      const entry = provider.find((candidate) => candidate.clientId === clientId);
      if (entry === undefined) throw new Error(`no provider client ${clientId}`);
      entry.clientSecret = newSecret;
      secretValues.push(newSecret);
      earlierTokenRequests += parts.oidc.tokenRequests();
      await parts.restartProvider();
      // Let the proxy's keep-alive pool see that its connections to the old server closed.
      await new Promise((resolve) => setTimeout(resolve, 50));
    },
    /**
     * The stand-in's secret for `clientId` now holds `newSecret`: a new AWSCURRENT version (the old one becomes
     * AWSPREVIOUS), or with `pending` a new AWSPENDING version, as a rotation function's createSecret step leaves it.
     */
    rotateInSecretsManager(clientId: keyof typeof secretNames, newSecret: string, options: { pending?: boolean } = {}) {
      secretValues.push(newSecret);
      const value = JSON.stringify({ client_id: clientId, client_secret: newSecret });
      if (options.pending === true) secretsManager.putPendingSecret(secretNames[clientId], value);
      else secretsManager.putSecret(secretNames[clientId], value);
    },
    /** The rotation's finishSecret step: AWSPENDING becomes AWSCURRENT. */
    finishRotationInSecretsManager(clientId: keyof typeof secretNames) {
      secretsManager.finishRotation(secretNames[clientId]);
    },
    /** Stores a secret value of the test's choice; it joins the values that must never be logged. */
    putSecret(secretName: string, value: string, sensitive: string[]) {
      secretValues.push(...sensitive);
      secretsManager.putSecret(secretName, value);
    },
    /** A token the test makes the proxy answer with: it joins the values that must never be logged. */
    injected(token: string): string {
      tokens.add(token);
      return token;
    },
    /** Every secret value and token seen so far. */
    mustNotLeak: () => [...secretValues, ...tokens],
    /** A second dynalite with the token table, to be stopped by the test. */
    async spareDynamo(): Promise<LocalDynamo> {
      const spare = await startDynalite();
      await createTokenTable(spare.endpoint, tableName);
      return spare;
    },
    async close() {
      await proxy.close();
      await parts.close();
    },
  };
}

export type FaultsHarness = Awaited<ReturnType<typeof startFaultsHarness>>;
