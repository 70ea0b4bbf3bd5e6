import { Duration, Validations } from 'aws-cdk-lib';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import type { Construct } from 'constructs';
import { apiGatewayAliasName, functionTimeoutMs, type RuntimeSettingName } from '../lambdas/contract.js';
import type { ClientRegistry } from '../lambdas/core/config.js';
import { functionEnvironmentOf } from '../lambdas/core/settings.js';
import { environmentVariables, serviceNameVariable } from '../lambdas/entry/environment.js';
import { grantFunctionRole } from './function-role.js';
import {
  type BundledFile,
  brokerHandler,
  type HandlerCode,
  handlerCodeOf,
  handlerFunction,
} from './handler-function.js';
import type { TokenBrokerProps } from './token-broker-props.js';

/*
 * Memory, chosen by measurement: the production bundle (1.1 MB), Node 22.23 on a 2-vCPU x86 machine, a fresh
 * process per run, 11 runs, medians; DynamoDB on dynalite, Secrets Manager on the test stand-in, the identity
 * provider unreachable so that every request runs the whole miss path (secret, table, lease, token endpoint
 * with retries). Importing the bundle: ~250 ms wall, ~260 ms CPU. First request: ~85 ms CPU. Each later
 * request down the same path: ~15 ms CPU; one served from the in-memory tier: under 0.1 ms. Peak RSS ~100 MB.
 * So 128 MB is too tight and 256 MB would hold it, but CPU is what the function runs short of: Lambda allots
 * CPU in proportion to memory (1,769 MB = one vCPU), so the ~345 ms of cold-start CPU becomes ~2.4 s at
 * 256 MB, ~1.2 s at 512 MB and ~0.6 s at 1,024 MB, and a 15 ms miss ~50 ms at 512 MB. Warm requests mostly
 * wait on DynamoDB, Secrets Manager and the identity provider, where more CPU buys nothing.
 * 512 MB: cold starts around a second, at half the GB-second price of 1,024 MB; raise it if cold-start
 * latency matters more than cost (it scales about inversely with memory up to 1,769 MB).
 */
const memorySizeMb = 512;
// Below API Gateway's 29 s integration limit, so a slow identity provider surfaces as the
// function's own timeout (logged, traced) rather than a gateway 504 that hides it. The runtime checks its
// upstream budget against the same figure.
const timeout = Duration.millis(functionTimeoutMs);

/** The props that become the function's settings (environment variables) when given. */
export type FunctionSettings = Pick<TokenBrokerProps, RuntimeSettingName | 'tokenEndpointHosts'>;

export interface BrokerFunctionProps {
  readonly clients: ClientRegistry;
  readonly table: dynamodb.ITable;
  readonly sealingSecret: secretsmanager.ISecret;
  readonly serviceName: string;
  readonly settings: FunctionSettings;
  readonly logRetention: logs.RetentionDays;
  /** The registry file the bundle carries (see lib/registry-file.ts). */
  readonly registryFile: BundledFile;
  /** @default from source when the sources are there, else the package's pre-bundled handler */
  readonly code?: HandlerCode;
}

export interface BrokerFunction {
  readonly logGroup: logs.LogGroup;
  readonly role: iam.Role;
  readonly fn: lambda.Function;
  /** The alias API Gateway invokes; the handler serves API Gateway's events through it only. */
  readonly apiGatewayAlias: lambda.Alias;
}

/** The broker function (`Function`), its log group, its role and the alias API Gateway invokes, in `scope`. */
export function brokerFunction(scope: Construct, props: BrokerFunctionProps): BrokerFunction {
  const logGroup = new logs.LogGroup(scope, 'FunctionLogs', { retention: props.logRetention });
  const role = new iam.Role(scope, 'FunctionRole', {
    assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
    description: 'token-broker function: its table items, its client secrets, its logs and traces; nothing else',
  });
  grantFunctionRole(role, { ...props, logGroup });

  const fn = handlerFunction(scope, 'Function', {
    code: props.code ?? handlerCodeOf(brokerHandler),
    memorySize: memorySizeMb,
    timeout,
    tracing: lambda.Tracing.ACTIVE,
    role,
    logGroup,
    description: 'OAuth2 client-credentials token broker',
    environment: functionEnvironment(props),
    bundledFiles: [props.registryFile],
  });
  Validations.of(fn).acknowledge({
    id: 'AwsSolutions-L1',
    reason:
      'Pinned to nodejs22.x on purpose: the project targets Node 22 (package.json engines, CI, local ' +
      'dev server) and the bundle is built for node22. Move to a newer runtime with the toolchain.',
  });
  // Every invoke permission is on an alias: API Gateway's on this one, callers' on the client aliases.
  const apiGatewayAlias = new lambda.Alias(scope, 'ApiGatewayAlias', {
    aliasName: apiGatewayAliasName,
    version: fn.currentVersion,
  });
  return { logGroup, role, fn, apiGatewayAlias };
}

/** What the function needs: its table, its registry file, its service name, and each setting given. */
function functionEnvironment({
  table,
  sealingSecret,
  serviceName,
  settings,
  registryFile,
}: BrokerFunctionProps): Record<string, string> {
  return {
    [environmentVariables.tableName]: table.tableName,
    [environmentVariables.clientsFile]: registryFile.name,
    [environmentVariables.sealingSecretArn]: sealingSecret.secretArn,
    [serviceNameVariable]: serviceName,
    ...functionEnvironmentOf(settings),
  };
}
