import type { Tracer } from '@aws-lambda-powertools/tracer';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { KMSClient } from '@aws-sdk/client-kms';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { STSClient } from '@aws-sdk/client-sts';
import { DynamoDbTokenCache } from '../adapters/dynamodb-cache.js';
import { KmsAssertionSigner } from '../adapters/kms-signer.js';
import { OAuthTokenEndpoint } from '../adapters/oauth-token-endpoint.js';
import { tracedWith, untraced } from '../adapters/observability.js';
import { fetchDefaults } from '../adapters/resilient-fetch.js';
import { SecretsManagerSealingKeySource, SecretsManagerSecretSource } from '../adapters/secrets-manager.js';
import { StsWebIdentityAssertions } from '../adapters/sts-web-identity.js';
import { TokenBroker } from '../core/broker.js';
import { configErrorOf } from '../core/config.js';
import { checkHostPatterns } from '../core/endpoint-hosts.js';
import type { BrokerLogger, BrokerMetrics, Clock, SealingKeySource, SecretSource } from '../core/ports.js';
import { systemClock } from '../core/ports.js';
import { runtimeSettingsOfEnvironment } from '../core/settings.js';
import { readClientRegistry } from './client-registry.js';
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
  // Every problem of the environment in one error, each naming its variable.
  const problems: string[] = [];
  const clients = readClientRegistry(env, { allowLoopbackHttp }, problems);
  const tableName = env[environmentVariables.tableName];
  if (!tableName) problems.push(`${environmentVariables.tableName} is not set`);
  // Checked as cdk.json's are, and with the same conflicts (the upstream budget against the function timeout).
  const { refreshWindowSeconds, refreshAheadMaxSeconds, upstreamBudgetMs, secretMaxAgeSeconds } =
    runtimeSettingsOfEnvironment(env, problems);
  const secretMaxAgeMs = secretMaxAgeSeconds * 1000;
  const approvedTokenEndpointHosts = readTokenEndpointHosts(env, problems);
  const sealingSecretArn = env[environmentVariables.sealingSecretArn];
  if (wiring.sealingKeys === undefined && !sealingSecretArn) {
    problems.push(`${environmentVariables.sealingSecretArn} is not set`);
  }
  if (problems.length > 0 || clients === undefined || !tableName) throw configErrorOf(problems, 'the environment');
  const clock = wiring.clock ?? systemClock;
  const tracer = wiring.tracer;
  const captured = <T>(client: T): T => (tracer === undefined ? client : tracer.captureAWSv3Client(client));
  // One client for the client secrets and the sealing key, and none when both are replaced.
  let secretsManagerClient: SecretsManagerClient | undefined;
  const secretsManager = () => (secretsManagerClient ??= captured(new SecretsManagerClient({})));
  // Made on first use: a deployment without KMS-signing clients never builds it.
  let kmsClient: KMSClient | undefined;
  const kms = () => (kmsClient ??= captured(new KMSClient({})));
  // The same for STS, used only by secretless (webIdentityAudience) clients, and imported only then: the bundle
  // keeps the SDK's module uninitialised until that first use, off every other cold start. Regional, as the SDK
  // resolves it by default: GetWebIdentityToken is not served by the global endpoint.
  let stsClient: Promise<STSClient> | undefined;
  const sts = () => (stsClient ??= import('@aws-sdk/client-sts').then(({ STSClient }) => captured(new STSClient({}))));

  return new TokenBroker({
    clients,
    clock,
    logger: wiring.logger,
    ...(wiring.metrics === undefined ? {} : { metrics: wiring.metrics }),
    refreshWindowSeconds,
    refreshAheadMaxSeconds,
    upstreamBudgetMs,
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
      http: {
        budgetMs: upstreamBudgetMs,
        attemptTimeoutMs: Math.min(fetchDefaults.attemptTimeoutMs, upstreamBudgetMs),
      },
      traced: tracer === undefined ? untraced : tracedWith(tracer),
      kmsSigner: new KmsAssertionSigner(kms),
      webIdentity: new StsWebIdentityAssertions(sts),
    }),
  });
}

/** TOKEN_BROKER_TOKEN_ENDPOINT_HOSTS: host patterns, comma-separated; unset or empty, none. */
function readTokenEndpointHosts(env: NodeJS.ProcessEnv, problems: string[]): string[] {
  const variable = environmentVariables.tokenEndpointHosts;
  const value = env[variable];
  if (value === undefined || value === '') return [];
  const hosts = value.split(',');
  const before = problems.length;
  checkHostPatterns(hosts, variable, problems);
  return problems.length === before ? hosts : [];
}
