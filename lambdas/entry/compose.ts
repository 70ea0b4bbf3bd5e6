import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Tracer } from '@aws-lambda-powertools/tracer';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { DynamoDbTokenCache } from '../adapters/dynamodb-cache.js';
import { OAuthTokenEndpoint } from '../adapters/oauth-token-endpoint.js';
import { tracedWith, untraced } from '../adapters/observability.js';
import { fetchDefaults } from '../adapters/resilient-fetch.js';
import {
  defaultSecretMaxAgeMs,
  SecretsManagerSealingKeySource,
  SecretsManagerSecretSource,
} from '../adapters/secrets-manager.js';
import {
  checkTimeBudget,
  defaultRefreshAheadMaxSeconds,
  defaultRefreshWindowSeconds,
  defaultUpstreamBudgetMs,
  TokenBroker,
} from '../core/broker.js';
import { type ClientRegistry, ConfigError, type ConfigOptions, parseClientRegistryJson } from '../core/config.js';
import { checkHostPatterns } from '../core/endpoint-hosts.js';
import type { BrokerLogger, BrokerMetrics, Clock, SealingKeySource, SecretSource } from '../core/ports.js';
import { systemClock } from '../core/ports.js';
import { environmentVariables } from './environment.js';

export interface BrokerWiring {
  logger: BrokerLogger;
  clock?: Clock;
  /** Replaces Secrets Manager, for the local dev server's embedded secrets. */
  secrets?: SecretSource;
  /** Replaces the sealing key in Secrets Manager, for the local dev server's key generated at start. */
  sealingKeys?: SealingKeySource;
  /** Plain http to loopback identity providers: the local dev server only. */
  allowLoopbackHttp?: boolean;
  metrics?: BrokerMetrics;
  /** X-Ray: SDK clients are captured and upstream calls get subsegments. */
  tracer?: Tracer;
}

/**
 * The composition root: builds the broker from the environment the stack sets. SDK clients are created
 * here once per container and without endpoints, so AWS_ENDPOINT_URL_DYNAMODB and
 * AWS_ENDPOINT_URL_SECRETS_MANAGER can point them elsewhere.
 */
export function createBrokerFromEnvironment(env: NodeJS.ProcessEnv, wiring: BrokerWiring): TokenBroker {
  const allowLoopbackHttp = wiring.allowLoopbackHttp === true;
  const clients = readClientRegistry(env, { allowLoopbackHttp });
  const tableName = env[environmentVariables.tableName];
  if (!tableName) throw new ConfigError(`${environmentVariables.tableName} is not set`);
  const refreshWindowSeconds = wholeNumber(env, 'refreshWindowSeconds', defaultRefreshWindowSeconds, 0);
  const refreshAheadMaxSeconds = wholeNumber(env, 'refreshAheadMaxSeconds', defaultRefreshAheadMaxSeconds, 0);
  const budgetMs = wholeNumber(env, 'upstreamBudgetMs', defaultUpstreamBudgetMs, 1);
  // A waiter may wait out a lease and then spend the whole budget itself: both must fit the function's timeout.
  const timeBudgetProblem = checkTimeBudget({ upstreamBudgetMs: budgetMs });
  if (timeBudgetProblem !== undefined) {
    throw new ConfigError(`${environmentVariables.upstreamBudgetMs}: ${timeBudgetProblem}`);
  }
  const secretMaxAgeMs = wholeNumber(env, 'secretMaxAgeSeconds', defaultSecretMaxAgeMs / 1000, 0) * 1000;
  const approvedTokenEndpointHosts = readTokenEndpointHosts(env);
  const clock = wiring.clock ?? systemClock;
  const tracer = wiring.tracer;
  const captured = <T>(client: T): T => (tracer === undefined ? client : tracer.captureAWSv3Client(client));
  const sealingSecretArn = env[environmentVariables.sealingSecretArn];
  if (wiring.sealingKeys === undefined && !sealingSecretArn) {
    throw new ConfigError(`${environmentVariables.sealingSecretArn} is not set`);
  }
  // One client for the client secrets and the sealing key, and none when both are replaced.
  let secretsManagerClient: SecretsManagerClient | undefined;
  const secretsManager = () => (secretsManagerClient ??= captured(new SecretsManagerClient({})));

  return new TokenBroker({
    clients,
    clock,
    logger: wiring.logger,
    ...(wiring.metrics === undefined ? {} : { metrics: wiring.metrics }),
    refreshWindowSeconds,
    refreshAheadMaxSeconds,
    upstreamBudgetMs: budgetMs,
    cache: new DynamoDbTokenCache(captured(new DynamoDBClient({})), tableName),
    secrets: wiring.secrets ?? new SecretsManagerSecretSource(secretsManager(), clock, wiring.logger, secretMaxAgeMs),
    sealingKeys:
      wiring.sealingKeys ??
      new SecretsManagerSealingKeySource(
        secretsManager(),
        sealingSecretArn ?? '',
        clock,
        wiring.logger,
        secretMaxAgeMs,
      ),
    endpoint: new OAuthTokenEndpoint({
      clock,
      logger: wiring.logger,
      ...(wiring.metrics === undefined ? {} : { metrics: wiring.metrics }),
      approvedTokenEndpointHosts,
      allowLoopbackHttp,
      http: { budgetMs, attemptTimeoutMs: Math.min(fetchDefaults.attemptTimeoutMs, budgetMs) },
      traced: tracer === undefined ? untraced : tracedWith(tracer),
    }),
  });
}

/**
 * The registry from TOKEN_BROKER_CLIENTS_FILE when set (the deployed function: clients.json in its bundle), else
 * from TOKEN_BROKER_CLIENTS (the local dev server and the tests). Read once, at cold start.
 */
function readClientRegistry(env: NodeJS.ProcessEnv, options: ConfigOptions): ClientRegistry {
  const file = env[environmentVariables.clientsFile];
  if (file === undefined || file === '') {
    return parseClientRegistryJson(env[environmentVariables.clients], environmentVariables.clients, options);
  }
  const path = resolve(env.LAMBDA_TASK_ROOT || process.cwd(), file);
  const source = `${environmentVariables.clientsFile} (${path})`;
  let json: string;
  try {
    json = readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'unknown error';
    throw new ConfigError(`${source} cannot be read: ${code}`);
  }
  if (json.trim() === '') throw new ConfigError(`${source} is empty`);
  try {
    return parseClientRegistryJson(json, source, options);
  } catch (error) {
    // The registry's own problems name client and field; say which file they are in.
    if (error instanceof ConfigError && !error.message.startsWith(source)) {
      throw new ConfigError(`${source}: ${error.message}`);
    }
    throw error;
  }
}

/** TOKEN_BROKER_TOKEN_ENDPOINT_HOSTS: host patterns, comma-separated; unset or empty, none. */
function readTokenEndpointHosts(env: NodeJS.ProcessEnv): string[] {
  const variable = environmentVariables.tokenEndpointHosts;
  const value = env[variable];
  if (value === undefined || value === '') return [];
  const hosts = value.split(',');
  const problems: string[] = [];
  checkHostPatterns(hosts, variable, problems);
  if (problems.length > 0) throw new ConfigError(problems.join('\n'));
  return hosts;
}

function wholeNumber(
  env: NodeJS.ProcessEnv,
  setting: keyof typeof environmentVariables,
  fallback: number,
  minimum: number,
): number {
  const variable = environmentVariables[setting];
  const value = env[variable];
  if (value === undefined || value === '') return fallback;
  const number = Number(value);
  if (!Number.isInteger(number) || number < minimum) {
    throw new ConfigError(`${variable} must be a whole number of at least ${minimum}`);
  }
  return number;
}
