import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, isAbsolute, join, posix, relative, resolve, sep } from 'node:path';
import {
  Annotations,
  ArnFormat,
  Aws,
  CfnOutput,
  CfnResource,
  CfnRule,
  Duration,
  Fn,
  NestedStack,
  RemovalPolicy,
  Stack,
  Stage,
  Token,
  Validations,
} from 'aws-cdk-lib';
import * as apigateway from 'aws-cdk-lib/aws-apigateway';
import type * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { type ICommandHooks, NodejsFunction } from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import type * as sns from 'aws-cdk-lib/aws-sns';
import { RegionInfo } from 'aws-cdk-lib/region-info';
import { Construct } from 'constructs';
import { partitionKey, ttlAttribute } from '../lambdas/adapters/dynamodb-schema.js';
import { webIdentityTokenSeconds } from '../lambdas/adapters/sts-web-identity.js';
import { functionTimeoutMs } from '../lambdas/core/broker.js';
import {
  arnsOfRegistry,
  type ClientConfig,
  type ClientRegistry,
  ConfigError,
  configErrorOf,
  defaultWebIdentitySigningAlgorithm,
  maxTargetLength,
  type NamedArn,
  partitionOf,
  secretIdentityOfArn,
  sharedSecretProblem,
} from '../lambdas/core/config.js';
import { maxMinTtlSeconds } from '../lambdas/core/freshness.js';
import { maxScopeLength } from '../lambdas/core/scope.js';
import {
  readTokenBrokerSettings,
  type SettingName,
  settingNames,
  unadmittedPrincipals,
} from '../lambdas/core/settings.js';
import { defaultServiceName, environmentVariables, serviceNameVariable } from '../lambdas/entry/environment.js';
import { adminAliasOf, apiGatewayAliasName } from '../lambdas/entry/invoke.js';
import { publishesJwks } from '../lambdas/entry/jwks.js';
import { InvokeAuditTrail } from './audit-trail.js';
import { nodejsBundling, repoRoot } from './bundling.js';
import { HostedJwks } from './hosted-jwks.js';
import { lambdaBundle } from './lambda-bundle.js';
import { type TokenBrokerAlarms, TokenBrokerMonitoring } from './monitoring.js';

/**
 * The API's one stage unless `stageName` says otherwise. Always a literal (never a token), because the API's
 * resource policy names it and cannot reference the stage.
 */
export const defaultStageName = 'v1';
// Powertools puts the service name in every metric's `service` dimension; CloudWatch allows 1,024 characters.
const serviceNamePattern = /^[A-Za-z0-9_.-]{1,128}$/;

/**
 * The only resource; `{client}` is the registry's client name, which IAM grants match literally.
 * POST fetches the client's token, DELETE drops its cached tokens: two IAM resources, granted separately.
 */
export { tokenPath } from '../lambdas/contract.js';

import { tokenPath } from '../lambdas/contract.js';

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
/*
 * The registry travels in the bundle as this file (Lambda's 4 KB of environment holds about a dozen clients);
 * TOKEN_BROKER_CLIENTS_FILE names it, relative to LAMBDA_TASK_ROOT.
 */
export const registryFileName = 'clients.json';
/*
 * Per-client aliases and grants live in this many nested stacks, a client's stack chosen by a hash of its name:
 * adding or removing a client never moves another client's alias to another stack (which would replace it).
 * 16 stacks hold ~200 clients with room to spare under CloudFormation's 500 resources per stack.
 */
export const clientStackCount = 16;
// CloudFormation's quotas per template (a nested stack's included).
const maxResourcesPerStack = 500;
const maxOutputsPerStack = 200;
// API Gateway's limit on a REST API's resource policy, in characters as it stores the policy.
const maxResourcePolicyChars = 8192;
// IAM's limits on all the inline policies of one role or user together, in characters without white space.
const maxInlinePolicyChars = { role: 10_240, user: 2_048 } as const;
/*
 * What one inline policy of a grantee costs besides its resources: the document, and a statement each for
 * execute-api:Invoke and lambda:InvokeFunction. Rounded up from the documents CDK synthesizes.
 */
const inlinePolicyOverheadChars = 200;
// A Lambda function name CloudFormation generates is at most this long.
const maxFunctionNameChars = 64;
/*
 * API Gateway stores each `execute-api:/…` resource expanded to a full ARN. Counted with a longer partition
 * and region than any that exist, a 12-digit account and a 10-character API id, so that a policy that fits
 * here fits in every region.
 */
const expandedExecuteApiPrefix = 'arn:aws-us-gov:execute-api:ap-southeast-5:123456789012:abcdefghij/';

export interface ThrottleSettings {
  /** Steady-state requests per second across the stage. */
  readonly rateLimit: number;
  /** Burst bucket size. */
  readonly burstLimit: number;
}

export interface TokenBrokerProps {
  /** The client registry (`context.tokenBroker.clients`); validated again here, errors name client and field. */
  readonly clients: ClientRegistry;
  /**
   * The fence around the API: principals of any other account are denied over HTTP. Without this and
   * without `allowedOrgId`, the deploying account. With it, it replaces the deploying account: list that
   * one too if callers there use HTTP. It admits nobody by itself: a caller of another account must be
   * granted a client (`allowedPrincipals`, `adminPrincipals`, or a grant method with its ARN).
   */
  readonly allowedAccounts?: string[];
  /** An AWS Organizations id: its member accounts are inside the fence too. It admits nobody by itself either. */
  readonly allowedOrgId?: string;
  /** execute-api interface VPC endpoint ids: the API becomes PRIVATE and only these endpoints reach it. */
  readonly vpcEndpointIds?: string[];
  /** Overrides the broker's default refresh window, in seconds. */
  readonly refreshWindowSeconds?: number;
  /** Stage throttling. @default 50 requests/s, burst 100 */
  readonly throttle?: ThrottleSettings;
  /** The API's stage: the first segment of every route and of every execute-api grant. @default 'v1' */
  readonly stageName?: string;
  /**
   * Time for one whole token exchange (discovery, token request, retries), in milliseconds. Synth fails when
   * a request that waits out a lease and then spends this budget could outlive the function's timeout.
   * @default 5000 (the function's own default)
   */
  readonly upstreamBudgetMs?: number;
  /** Renewal starts a fifth of a token's lifetime before expiry, at most this many seconds. @default 300 */
  readonly refreshAheadMaxSeconds?: number;
  /** How long a container reuses a client secret before reading it again, in seconds. @default 300 */
  readonly secretMaxAgeSeconds?: number;
  /**
   * The function's Powertools service name (POWERTOOLS_SERVICE_NAME): the `service` dimension of its metrics,
   * which the alarms and the dashboard read. Give each broker in one account and region its own, or their
   * alarms watch each other's metrics. @default 'token-broker'
   */
  readonly serviceName?: string;
  /**
   * Roles or users of the deploying account that may invalidate the cached tokens of every client, present and
   * future: the platform team's. One identity policy each, naming the DELETE route of every client and every
   * admin alias by wildcard, so it stays the same size however many clients there are. Admins of other
   * accounts are listed under each client's `adminPrincipals`.
   */
  readonly adminPrincipals?: string[];
  /**
   * Hosts (exact, or `*.` and one label's wildcard) any client's token endpoint may be on besides its issuer's
   * host, for clients without `tokenEndpointHosts` of their own; another host gets nothing. @default none
   */
  readonly tokenEndpointHosts?: string[];
  /** Retention of the function's logs and the API's access logs. @default one month */
  readonly logRetention?: logs.RetentionDays;
  /**
   * A CloudTrail trail of the function's Invoke events (see `InvokeAuditTrail`): the only record of who invoked
   * it directly. Turn it off only where another trail already records this function's Lambda data events.
   * @default true
   */
  readonly auditTrail?: boolean;
  /** Gets the ALARM and OK notifications of every alarm the construct creates. @default no actions */
  readonly alarmTopic?: sns.ITopic;
  /**
   * Clients deployed before the per-client aliases moved into nested stacks (a8b4b77): their aliases stay in
   * this construct's stack under their old logical ids, and their config principals keep the resource-policy
   * grants that layout gave them. Moving such an alias into a nested stack would create an alias of the same
   * name before deleting the old one, which Lambda refuses, failing the update (docs/deploy.md, "Upgrade").
   * List every client of a deployment made before that commit, once; clients added later need not be listed.
   */
  readonly legacyRootAliases?: string[];
}

/**
 * The OAuth2 client-credentials token broker: one function behind an IAM-authorized REST API (through the
 * alias `api_gateway`) and two Lambda aliases per client (`<client>` for tokens, `<client>_admin` for
 * invalidation), a DynamoDB token cache, and per-client grants that IAM enforces natively:
 * `execute-api:Invoke` on a client's POST (fetch) or DELETE (invalidate) route over HTTP,
 * `lambda:InvokeFunction` on its token or admin alias. Alarms and a dashboard watch it.
 */
export class TokenBroker extends Construct {
  readonly clients: ClientRegistry;
  readonly clientNames: readonly string[];
  readonly table: dynamodb.Table;
  /** The deployment's random key that tokens in the table are sealed under; only the function reads it. */
  readonly sealingSecret: secretsmanager.Secret;
  readonly fn: NodejsFunction;
  /** The alias API Gateway invokes; the handler serves API Gateway's events through it only. */
  readonly apiGatewayAlias: lambda.Alias;
  readonly role: iam.Role;
  readonly logGroup: logs.LogGroup;
  readonly accessLogGroup: logs.LogGroup;
  readonly api: apigateway.RestApi;
  readonly stage: apigateway.Stage;
  /** The stage's name, as routes and grants name it. */
  readonly stageName: string;
  /** The `service` dimension of the function's metrics (its POWERTOOLS_SERVICE_NAME). */
  readonly serviceName: string;
  readonly endpointType: apigateway.EndpointType;
  readonly monitoring: TokenBrokerMonitoring;
  /** The trail of direct invocations, unless `auditTrail` is false. */
  readonly invokeAuditTrail?: InvokeAuditTrail;
  /** The public JWKS of the private_key_jwt clients, when any client has keys to publish. */
  readonly hostedJwks?: HostedJwks;
  private readonly legacyRootAliases: ReadonlySet<string>;
  private readonly aliases = new Map<string, lambda.Alias>();
  private readonly adminAliases = new Map<string, lambda.Alias>();
  /** The nested stacks holding per-client resources, by index (see `clientStackIndexOf`). */
  private readonly clientStackByIndex = new Map<number, NestedStack>();
  /**
   * Principals of the deploying account given identity policies, imported once per place their policy lives:
   * `<nested stack index> <arn>`, or `all <arn>` for an admin of every client (in this construct's stack).
   */
  private readonly importedPrincipals = new Map<string, iam.IRole | iam.IUser>();

  constructor(scope: Construct, id: string, props: TokenBrokerProps) {
    super(scope, id);
    this.stageName = props.stageName ?? defaultStageName;
    this.serviceName = props.serviceName ?? defaultServiceName;
    this.clients = checkedClientsOf(this, props, this.serviceName);
    this.clientNames = Object.keys(this.clients);
    this.legacyRootAliases = new Set(props.legacyRootAliases ?? []);
    const retention = props.logRetention ?? logs.RetentionDays.ONE_MONTH;

    this.table = new dynamodb.Table(this, 'Tokens', {
      partitionKey: { name: partitionKey, type: dynamodb.AttributeType.STRING },
      timeToLiveAttribute: ttlAttribute,
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      encryption: dynamodb.TableEncryption.AWS_MANAGED,
      // A cache: every item can be fetched again from the identity provider.
      removalPolicy: RemovalPolicy.DESTROY,
    });
    Validations.of(this.table).acknowledge({
      id: 'AwsSolutions-DDB3',
      reason:
        'The table caches short-lived access tokens that the broker re-fetches on a miss. Point-in-time ' +
        'recovery would restore nothing of value and would keep bearer tokens in backups for 35 days.',
    });

    /*
     * The key cached tokens are sealed under, which the table never sees. A secret rather than a KMS data key:
     * the function already reads Secrets Manager at cold start, so the key comes in parallel with the client's
     * secret through the SDK client the bundle has anyway, with no KMS client added to the cold start and no
     * KMS call per sealed item; and the tests run the real SDK path against the Secrets Manager stand-in.
     */
    this.sealingSecret = new secretsmanager.Secret(this, 'SealingKey', {
      description:
        'token-broker: the random key the cached tokens are sealed under in the token table (not a client secret)',
      // 64 letters and digits, about 380 bits; the function derives a key per cached token from it.
      generateSecretString: { passwordLength: 64, excludePunctuation: true, includeSpace: false },
      // It seals nothing but the table's cache, which goes with the stack too.
      removalPolicy: RemovalPolicy.DESTROY,
    });
    Validations.of(this.sealingSecret).acknowledge({
      id: 'AwsSolutions-SMG4',
      reason:
        'The sealing key has no counterpart outside this stack, so a rotation Lambda would have nothing to ' +
        'update: rotating it is putting a new random value (docs/deploy.md), after which every cached token ' +
        'reads as a miss once and is fetched again from the identity provider.',
    });

    this.logGroup = new logs.LogGroup(this, 'FunctionLogs', { retention });
    this.role = new iam.Role(this, 'FunctionRole', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: 'token-broker function: its table items, its client secrets, its logs and traces; nothing else',
    });
    this.grantFunctionRole();

    this.fn = new NodejsFunction(this, 'Function', {
      entry: `${repoRoot}${lambdaBundle.entry}`,
      handler: 'handler',
      projectRoot: repoRoot,
      depsLockFilePath: `${repoRoot}package-lock.json`,
      runtime: lambda.Runtime.NODEJS_22_X,
      architecture: lambda.Architecture.ARM_64,
      memorySize: memorySizeMb,
      timeout,
      tracing: lambda.Tracing.ACTIVE,
      role: this.role,
      logGroup: this.logGroup,
      description: 'OAuth2 client-credentials token broker',
      environment: this.functionEnvironment(props),
      bundling: nodejsBundling(this.registryBundlingHooks()),
    });
    // Every invoke permission is on an alias: API Gateway's on this one, callers' on the client aliases.
    this.apiGatewayAlias = new lambda.Alias(this, 'ApiGatewayAlias', {
      aliasName: apiGatewayAliasName,
      version: this.fn.currentVersion,
    });
    if (props.auditTrail ?? true) {
      this.invokeAuditTrail = new InvokeAuditTrail(this, 'InvokeAudit', { fn: this.fn, logRetention: retention });
    }
    Validations.of(this.fn).acknowledge({
      id: 'AwsSolutions-L1',
      reason:
        'Pinned to nodejs22.x on purpose: the project targets Node 22 (package.json engines, CI, local ' +
        'dev server) and the bundle is built for node22. Move to a newer runtime with the toolchain.',
    });

    this.endpointType =
      props.vpcEndpointIds === undefined ? apigateway.EndpointType.REGIONAL : apigateway.EndpointType.PRIVATE;
    this.accessLogGroup = new logs.LogGroup(this, 'ApiAccessLogs', { retention });
    const throttle = props.throttle ?? { rateLimit: 50, burstLimit: 100 };
    this.api = new apigateway.RestApi(this, 'Api', {
      restApiName: `${Stack.of(this).stackName}-api`,
      description: 'token-broker: POST and DELETE /clients/{client}/token, IAM (SigV4) callers only',
      endpointConfiguration: {
        types: [this.endpointType],
        ...(props.vpcEndpointIds === undefined
          ? {}
          : {
              vpcEndpoints: props.vpcEndpointIds.map((vpcEndpointId) =>
                ec2.InterfaceVpcEndpoint.fromInterfaceVpcEndpointAttributes(this, `Endpoint-${vpcEndpointId}`, {
                  vpcEndpointId,
                  port: 443,
                }),
              ),
            }),
      },
      // The account-level CloudWatch role is left to the platform (feature flag disableCloudWatchRole): see docs/deploy.md.
      cloudWatchRole: false,
      defaultMethodOptions: { authorizationType: apigateway.AuthorizationType.IAM },
      deployOptions: {
        stageName: this.stageName,
        accessLogDestination: new apigateway.LogGroupLogDestination(this.accessLogGroup),
        accessLogFormat: accessLogFormat(),
        loggingLevel: apigateway.MethodLoggingLevel.ERROR,
        dataTraceEnabled: false,
        metricsEnabled: true,
        tracingEnabled: true,
        throttlingRateLimit: throttle.rateLimit,
        throttlingBurstLimit: throttle.burstLimit,
      },
    });
    this.stage = this.api.deploymentStage;
    this.addResourcePolicy(props);
    // Grants add to the resource policy after construction, so its size is checked when the app is synthesized.
    this.node.addValidation({ validate: () => this.checkResourcePolicy() });
    this.addTokenRoute();
    Validations.of(this.stage).acknowledge({
      id: 'AwsSolutions-APIG3',
      reason:
        'No WAF: every request must carry a SigV4 signature of an admitted IAM principal, the resource policy ' +
        'rejects other accounts before the integration runs, the body is schema-validated and the stage is ' +
        'throttled. Attach a web ACL to the stage where an organisation mandates one.',
    });

    for (const name of this.clientNames) {
      // The handler serves a direct invocation only through the alias named after the requested client,
      // and an invalidation only through the client's admin alias: both on the one published version.
      // Each client's aliases sit in its nested stack, so that 200 clients fit CloudFormation's quotas; those of
      // a deployment older than that layout stay where they were made.
      const clientStack = this.legacyRootAliases.has(name) ? this : this.clientStackOf(name);
      this.aliases.set(
        name,
        new lambda.Alias(clientStack, `ClientAlias-${name}`, { aliasName: name, version: this.fn.currentVersion }),
      );
      this.adminAliases.set(
        name,
        new lambda.Alias(clientStack, `AdminAlias-${name}`, {
          aliasName: adminAliasOf(name),
          version: this.fn.currentVersion,
        }),
      );
    }
    for (const name of this.clientNames) {
      // Config-declared callers get the same grants the methods below give to constructs.
      (this.clients[name]?.allowedPrincipals ?? []).forEach((arn, index) => {
        const principal = this.configPrincipal(name, 'allowedPrincipals', index, arn);
        this.grantFetchToken(principal, name);
        this.grantInvokeForClient(principal, name);
      });
      (this.clients[name]?.adminPrincipals ?? []).forEach((arn, index) => {
        this.grantInvalidate(this.configPrincipal(name, 'adminPrincipals', index, arn), name);
      });
    }
    this.grantPlatformAdmins(props.adminPrincipals ?? []);
    this.nameGranteePolicies();
    checkGranteePolicySizes(this.granteePolicySizes());
    // Grants and cross-stack references add resources and outputs until synthesis: counted then.
    this.node.addValidation({ validate: () => this.checkStackQuotas() });

    this.monitoring = new TokenBrokerMonitoring(this, 'Monitoring', {
      fn: this.fn,
      serviceName: this.serviceName,
      api: this.api,
      table: this.table,
      ...(props.alarmTopic === undefined ? {} : { alarmTopic: props.alarmTopic }),
    });
    if (HostedJwks.neededFor(this.clients)) {
      this.hostedJwks = new HostedJwks(this, 'HostedJwks', {
        clients: this.clients,
        registryBundling: this.registryBundlingHooks(),
        registryFileName,
        serviceName: this.serviceName,
        logRetention: retention,
      });
    }
  }

  /** The construct's CloudWatch alarms (see docs/deploy.md, "Alarms"). */
  get alarms(): TokenBrokerAlarms {
    return this.monitoring.alarms;
  }

  /** The nested stacks of the per-client aliases and grants (a client's is `Stack.of(aliasFor(client))`). */
  get clientStacks(): NestedStack[] {
    return [...this.clientStackByIndex.values()];
  }

  /** The CloudWatch dashboard of the broker's metrics. */
  get dashboard(): cloudwatch.Dashboard {
    return this.monitoring.dashboard;
  }

  /** The alias a client's direct invocations must go through (its name is the client's). */
  aliasFor(clientName: string): lambda.Alias {
    const alias = this.aliases.get(this.requireClient(clientName));
    if (alias === undefined) throw new Error(`no alias for client ${clientName}`);
    return alias;
  }

  /** The alias a client's invalidations by direct invoke must go through: `<client>_admin`. */
  adminAliasFor(clientName: string): lambda.Alias {
    const alias = this.adminAliases.get(this.requireClient(clientName));
    if (alias === undefined) throw new Error(`no admin alias for client ${clientName}`);
    return alias;
  }

  /** The URL a client's provider fetches its public keys from (`jwks_uri`); see docs/deploy.md, "Hosted JWKS". */
  jwksUrlFor(clientName: string): string {
    const client = this.clients[clientName];
    if (this.hostedJwks === undefined || client === undefined || !publishesJwks(client)) {
      throw new Error(
        `client ${clientName} publishes no JWKS: it needs authMethod private_key_jwt and signingKeyArn, jwksKeyArns or jwks`,
      );
    }
    return this.hostedJwks.urlFor(clientName);
  }

  /** The HTTPS URL of a client's token route on the deployed stage. */
  tokenUrlFor(clientName: string): string {
    return this.stage.urlForPath(tokenPath(this.requireClient(clientName)));
  }

  /** The execute-api ARN of a client's token route: the resource an HTTP grant names. */
  tokenRouteArn(clientName: string): string {
    return this.api.arnForExecuteApi('POST', tokenPath(this.requireClient(clientName)), this.stageName);
  }

  /** The execute-api ARN of a client's invalidation route (DELETE): the resource an admin HTTP grant names. */
  invalidateRouteArn(clientName: string): string {
    return this.api.arnForExecuteApi('DELETE', tokenPath(this.requireClient(clientName)), this.stageName);
  }

  /**
   * Lets `grantee` fetch `clientName`'s token over HTTP: `execute-api:Invoke` on that client's route only.
   * A principal of this app gets an identity policy; a principal known only by ARN (another account, or
   * not managed here) is named in the API's resource policy, and a cross-account one still needs an
   * identity policy of its own allowing the same route.
   */
  grantFetchToken(grantee: iam.IGrantable, clientName: string): iam.Grant {
    const path = tokenPath(this.requireClient(clientName));
    return iam.Grant.addToPrincipalOrResource({
      grantee,
      actions: ['execute-api:Invoke'],
      resourceArns: [this.api.arnForExecuteApi('POST', path, this.stageName)],
      // The resource policy belongs to the API itself, which cannot reference its own id.
      resourceSelfArns: [`execute-api:/${this.stageName}/POST${path}`],
      resource: this.api,
    });
  }

  /**
   * Lets `grantee` invoke the function directly for `clientName`: `lambda:InvokeFunction` on that
   * client's alias only, never on the unqualified function, a version, or another client's alias.
   */
  grantInvokeForClient(grantee: iam.IGrantable, clientName: string): iam.Grant {
    return this.aliasFor(clientName).grantInvoke(grantee);
  }

  /**
   * Lets `grantee` drop every cached token of `clientName`: `execute-api:Invoke` on that client's DELETE
   * route and `lambda:InvokeFunction` on its admin alias `<client>_admin`. It grants no token, and the
   * token grants grant no invalidation. Principals are handled as in `grantFetchToken`: an identity policy
   * for one of this app, resource-policy entries for one known only by ARN.
   */
  grantInvalidate(grantee: iam.IGrantable, clientName: string): iam.Grant {
    const path = tokenPath(this.requireClient(clientName));
    const overHttp = iam.Grant.addToPrincipalOrResource({
      grantee,
      actions: ['execute-api:Invoke'],
      resourceArns: [this.api.arnForExecuteApi('DELETE', path, this.stageName)],
      resourceSelfArns: [`execute-api:/${this.stageName}/DELETE${path}`],
      resource: this.api,
    });
    return overHttp.combine(this.adminAliasFor(clientName).grantInvoke(grantee));
  }

  private requireClient(clientName: string): string {
    if (!Object.hasOwn(this.clients, clientName)) {
      throw new ConfigError(
        `unknown client ${JSON.stringify(clientName)}: the registry declares ${this.clientNames.join(', ')}`,
      );
    }
    return clientName;
  }

  /**
   * Copies the runtime registry into the bundle as clients.json once esbuild has run. The JSON is written at
   * synth time into the cloud assembly, under a name of its content's hash: a changed registry is a changed
   * file, so a changed bundle and asset hash (NodejsFunction hashes its output), and a changed bundling
   * command, so CDK's in-process bundling cache never hands one registry's bundle to another. An assembly
   * inside the project (cdk.out) is also reachable from the Docker fallback, which mounts the project at
   * inputDir. The commands run in a POSIX shell (local bundling on Linux or macOS, or Docker).
   */
  private registryBundlingHooks(): ICommandHooks {
    const json = this.runtimeRegistryJson();
    const digest = createHash('sha256').update(json).digest('hex').slice(0, 16);
    const assembly = resolve(Stage.of(this)?.assetOutdir ?? '.');
    const file = join(assembly, 'token-broker-registry', `clients-${digest}.json`);
    if (Stack.of(this).bundlingRequired) {
      mkdirSync(dirname(file), { recursive: true });
      writeFileSync(file, json);
    }
    const inProject = relative(repoRoot, file);
    return {
      beforeBundling: () => [],
      beforeInstall: () => [],
      afterBundling: (inputDir: string, outputDir: string) => {
        const source =
          inProject.startsWith('..') || isAbsolute(inProject) ? file : posix.join(inputDir, ...inProject.split(sep));
        return [`cp ${shellQuoted(source)} ${shellQuoted(posix.join(outputDir, registryFileName))}`];
      },
    };
  }

  /** The nested stack of a client's aliases and grants, created with its first client. */
  private clientStackOf(clientName: string): NestedStack {
    const index = clientStackIndexOf(clientName);
    const existing = this.clientStackByIndex.get(index);
    if (existing !== undefined) return existing;
    const created = new NestedStack(this, `Clients${String(index).padStart(2, '0')}`, {
      description: `token-broker: Lambda aliases and grants of the clients in bucket ${index} of ${clientStackCount}`,
    });
    this.clientStackByIndex.set(index, created);
    return created;
  }

  /**
   * What a config principal is granted through. A role or user of the deploying account gets identity
   * policies, its imported construct shared by every grant in one nested stack so that its statements merge
   * into one policy there; it is named in no resource policy, which keeps the API's within 8,192 characters.
   * Account roots and principals of other accounts are named in the resource policies (the API's route
   * statement and a Lambda permission on the alias): another account's identities cannot be given policies
   * here. When the deploying account is unknown at synth (an env-agnostic stack), nobody can tell which case
   * applies: resource policies, which work either way, and a warning.
   */
  private configPrincipal(
    clientName: string,
    field: 'allowedPrincipals' | 'adminPrincipals',
    index: number,
    arn: string,
  ): iam.IGrantable {
    // The grants of the old layout, unchanged: moving them to identity policies could leave a gap mid-update.
    if (this.legacyRootAliases.has(clientName)) return new iam.ArnPrincipal(arn);
    const deployingAccount = Stack.of(this).account;
    if (Token.isUnresolved(deployingAccount)) {
      Annotations.of(this).addWarningV2(
        '@token-broker/principal-account-unchecked',
        `tokenBroker.clients.${clientName}.${field}[${index}]: the stack has no account (env-agnostic), so ` +
          `whether ${arn} is in the deploying account cannot be checked. It is granted through resource ` +
          "policies (the API's and a Lambda permission), which count against the API policy's 8,192 characters; " +
          'give the stack an account (env) to grant principals of that account through identity policies.',
      );
      return new iam.ArnPrincipal(arn);
    }
    const kind = identityKindOf(arn, deployingAccount);
    if (kind === undefined) return new iam.ArnPrincipal(arn);
    const key = `${clientStackIndexOf(clientName)} ${arn}`;
    const imported = this.importedPrincipals.get(key);
    if (imported !== undefined) return imported;
    const principal = importedIdentity(this.clientStackOf(clientName), 'Grantee', arn, kind);
    this.importedPrincipals.set(key, principal);
    return principal;
  }

  /**
   * The admins of every client. The wildcards are exact: `{client}` is the API's only path parameter and
   * DELETE its only other method on that route, and only admin aliases end in `_admin`, since client names
   * have no `_` (neither the client aliases nor `api_gateway` match).
   */
  private grantPlatformAdmins(arns: readonly string[]): void {
    const deployingAccount = Stack.of(this).account;
    const problems: string[] = [];
    const admins = arns.map((arn) => ({ arn, kind: identityKindOf(arn, deployingAccount) }));
    admins.forEach(({ arn, kind }, index) => {
      const at = `tokenBroker.adminPrincipals[${index}]`;
      if (Token.isUnresolved(deployingAccount)) {
        problems.push(
          `${at}: the stack has no account (env-agnostic), so whether ${arn} can be given an identity policy ` +
            'cannot be checked: give the stack an account',
        );
      } else if (kind === undefined) {
        problems.push(
          `${at}: must be a role or user of the deploying account (${deployingAccount}), which gets an identity ` +
            "policy; list other principals under each client's adminPrincipals",
        );
      }
    });
    if (problems.length > 0) throw configErrorOf(problems);
    const everyRoute = this.api.arnForExecuteApi('DELETE', tokenPath('*'), this.stageName);
    const everyAdminAlias = `${this.fn.functionArn}:${adminAliasOf('*')}`;
    for (const { arn, kind } of admins) {
      if (kind === undefined) continue; // refused above
      const principal = importedIdentity(this, 'PlatformAdmin', arn, kind);
      principal.addToPrincipalPolicy(
        new iam.PolicyStatement({ actions: ['execute-api:Invoke'], resources: [everyRoute] }),
      );
      principal.addToPrincipalPolicy(
        new iam.PolicyStatement({ actions: ['lambda:InvokeFunction'], resources: [everyAdminAlias] }),
      );
      for (const resource of [everyRoute, everyAdminAlias]) {
        Validations.of(principal).acknowledge({
          id: `AwsSolutions-IAM5[Resource::${nagRendering(Stack.of(this).resolve(resource))}]`,
          reason:
            "The platform admins' wildcards name exactly every client's DELETE route and every admin alias: " +
            '{client} is the only path parameter, and only admin aliases end in _admin (client names have no _). ' +
            'Neither matches a token route, a client alias or the api_gateway alias.',
        });
      }
      this.importedPrincipals.set(`all ${arn}`, principal);
    }
  }

  /**
   * An inline policy's name is unique per role or user, and CDK names one by its logical id, which is the same
   * in every deployment of this stack: two deployments granting one role would overwrite (and on deletion
   * remove) each other's policy. The stack name sets them apart.
   */
  private nameGranteePolicies(): void {
    const stackName = Stack.of(this).stackName;
    for (const [key, principal] of this.importedPrincipals) {
      // Its one Policy, whose id depends on a feature flag (@aws-cdk/aws-iam:importedRoleStackSafeDefaultPolicyName).
      const policy = principal.node.children.find((child) => child instanceof iam.Policy);
      const cfnPolicy = policy?.node.defaultChild;
      if (!(cfnPolicy instanceof iam.CfnPolicy)) continue;
      const suffix = `-${key.split(' ')[0]}-${principal.node.id}`;
      cfnPolicy.policyName = `${stackName.slice(0, 128 - suffix.length)}${suffix}`;
    }
  }

  /**
   * The characters the identity policies of config principals will take, principal by principal: every route
   * and alias ARN they name, at the longest partition, region and function name this deployment could have,
   * and each policy's own overhead (one per nested stack the principal has grants in).
   */
  private granteePolicySizes(): GranteePolicySize[] {
    const stack = Stack.of(this);
    const region = Token.isUnresolved(stack.region) ? 'ap-southeast-5' : stack.region;
    const arnPrefix = (service: string) => `arn:aws-us-gov:${service}:${region}:${stack.account}:`;
    const sizes = new Map<string, GranteePolicySize>();
    const grants = [
      ['allowedPrincipals', 'POST', (name: string) => name],
      ['adminPrincipals', 'DELETE', adminAliasOf],
    ] as const;
    for (const name of this.clientNames) {
      const index = clientStackIndexOf(name);
      for (const [field, method, aliasOf] of grants) {
        for (const arn of this.clients[name]?.[field] ?? []) {
          if (!this.importedPrincipals.has(`${index} ${arn}`)) continue;
          const route = `${arnPrefix('execute-api')}abcdefghij/${this.stageName}/${method}${tokenPath(name)}`;
          const alias = `${arnPrefix('lambda')}function:${'f'.repeat(maxFunctionNameChars)}:${aliasOf(name)}`;
          const size = sizes.get(arn) ?? { arn, resourceChars: 0, clients: new Set(), policies: new Set() };
          // Each resource is a quoted string followed by a comma.
          size.resourceChars += route.length + alias.length + 6;
          size.clients.add(name);
          size.policies.add(index);
          sizes.set(arn, size);
        }
      }
    }
    return [...sizes.values()];
  }

  /** CloudFormation's per-template quotas, for the stack the broker is in and each of its nested stacks. */
  private checkStackQuotas(): string[] {
    const problems: string[] = [];
    for (const stack of [Stack.of(this), ...this.clientStacks]) {
      let resources = 0;
      let outputs = 0;
      for (const construct of stack.node.findAll()) {
        if (Stack.of(construct) !== stack) continue;
        if (construct instanceof CfnResource) resources += 1;
        else if (construct instanceof CfnOutput) outputs += 1;
      }
      const which = stack.nested
        ? `nested stack ${stack.node.path} (the aliases and grants of the clients hashed to it)`
        : `stack ${stack.node.path}`;
      if (resources > maxResourcesPerStack) {
        problems.push(
          `${which} would have ${resources} resources, over CloudFormation's limit of ${maxResourcesPerStack} ` +
            'per stack: grant fewer principals per client, or split the registry over several deployments',
        );
      }
      if (outputs > maxOutputsPerStack) {
        problems.push(
          `${which} would have ${outputs} outputs, over CloudFormation's limit of ${maxOutputsPerStack} per ` +
            'stack: every reference from another stack to a resource of this one is an output',
        );
      }
    }
    return problems;
  }

  /** The registry as the function reads it (clients.json). */
  private runtimeRegistryJson(): string {
    return JSON.stringify(runtimeRegistryOf(this.clients));
  }

  /** What the function needs: its table, its registry file, its service name, and each setting given. */
  private functionEnvironment(props: TokenBrokerProps): Record<string, string> {
    const optional = (setting: keyof typeof environmentVariables, value: number | undefined) =>
      value === undefined ? {} : { [environmentVariables[setting]]: String(value) };
    return {
      [environmentVariables.tableName]: this.table.tableName,
      [environmentVariables.clientsFile]: registryFileName,
      [environmentVariables.sealingSecretArn]: this.sealingSecret.secretArn,
      [serviceNameVariable]: this.serviceName,
      ...optional('refreshWindowSeconds', props.refreshWindowSeconds),
      ...optional('upstreamBudgetMs', props.upstreamBudgetMs),
      ...optional('refreshAheadMaxSeconds', props.refreshAheadMaxSeconds),
      ...optional('secretMaxAgeSeconds', props.secretMaxAgeSeconds),
      ...(props.tokenEndpointHosts === undefined
        ? {}
        : { [environmentVariables.tokenEndpointHosts]: props.tokenEndpointHosts.join(',') }),
    };
  }

  /**
   * The role's whole policy, statement by statement. `Function` adds one more for `Tracing.ACTIVE`:
   * xray:PutTraceSegments and xray:PutTelemetryRecords on `*`, because X-Ray has no resource-level
   * permissions for them (the API takes no resource ARN), so `*` is the only resource AWS accepts.
   */
  private grantFunctionRole(): void {
    const stack = Stack.of(this);
    this.role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'TokenCache',
        // Exactly the calls lambdas/adapters/dynamodb-cache.ts makes: items and leases by key, and the Scan
        // with which an invalidation finds a client's cached tokens. Not grantReadWriteData: that adds
        // batch, query, update and describe actions the code never uses.
        actions: [
          'dynamodb:GetItem',
          'dynamodb:PutItem',
          'dynamodb:DeleteItem',
          'dynamodb:UpdateItem',
          'dynamodb:Scan',
        ],
        resources: [this.table.tableArn],
      }),
    );

    const secretArns = new Set<string>();
    const keysByService = new Map<string, Set<string>>();
    for (const client of Object.values(this.clients) as ClientConfig[]) {
      const arn = secretArnOf(stack, client.secretName);
      secretArns.add(arn);
      if (client.secretKmsKeyArn !== undefined) {
        // Decrypt only on Secrets Manager's behalf, in the region that holds the secret.
        const region = client.secretName.startsWith('arn:') ? client.secretName.split(':')[3] : stack.region;
        const service = `secretsmanager.${region}.amazonaws.com`;
        const keys = keysByService.get(service) ?? new Set<string>();
        keys.add(client.secretKmsKeyArn);
        keysByService.set(service, keys);
      }
    }
    this.role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'ClientSecrets',
        actions: ['secretsmanager:GetSecretValue'],
        resources: [...secretArns],
      }),
    );
    this.role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'SealingKey',
        // Read only: not grantRead, which adds DescribeSecret the code never calls.
        actions: ['secretsmanager:GetSecretValue'],
        resources: [this.sealingSecret.secretArn],
      }),
    );
    let keyStatement = 0;
    for (const [service, keys] of keysByService) {
      keyStatement += 1;
      this.role.addToPrincipalPolicy(
        new iam.PolicyStatement({
          sid: `ClientSecretKeys${keyStatement}`,
          actions: ['kms:Decrypt'],
          resources: [...keys],
          conditions: { StringEquals: { 'kms:ViaService': service } },
        }),
      );
    }

    const signingKeys = [
      ...new Set(
        (Object.values(this.clients) as ClientConfig[]).flatMap((client) =>
          client.signingKeyArn === undefined ? [] : [client.signingKeyArn],
        ),
      ),
    ];
    if (signingKeys.length > 0) {
      this.role.addToPrincipalPolicy(
        new iam.PolicyStatement({
          sid: 'ClientSigningKeys',
          // Sign client assertions and read the public half; the private key never leaves KMS.
          actions: ['kms:Sign', 'kms:GetPublicKey'],
          resources: signingKeys,
        }),
      );
    }

    const federated = (Object.values(this.clients) as ClientConfig[]).filter(
      (client) => client.webIdentityAudience !== undefined,
    );
    if (federated.length > 0) {
      this.role.addToPrincipalPolicy(
        new iam.PolicyStatement({
          sid: 'WebIdentityTokens',
          // Secretless clients' assertions. STS takes no resource here, so the conditions are the bound: only
          // the registry's audiences and algorithms, and tokens of at most the five minutes an assertion lives.
          actions: ['sts:GetWebIdentityToken'],
          resources: ['*'],
          conditions: {
            'ForAllValues:StringEquals': {
              'sts:IdentityTokenAudience': [...new Set(federated.map((client) => client.webIdentityAudience))],
            },
            StringEquals: {
              'sts:SigningAlgorithm': [
                ...new Set(
                  federated.map((client) => client.webIdentitySigningAlgorithm ?? defaultWebIdentitySigningAlgorithm),
                ),
              ],
            },
            NumericLessThanEquals: { 'sts:DurationSeconds': webIdentityTokenSeconds },
          },
        }),
      );
    }

    this.role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'FunctionLogs',
        // The log group exists (this stack creates it), so logs:CreateLogGroup is not needed.
        actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
        resources: [this.logGroup.logGroupArn],
      }),
    );
    Validations.of(this.role).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason:
        'Only xray:PutTraceSegments and xray:PutTelemetryRecords (added for active tracing) use "*": X-Ray ' +
        'supports no resource-level permissions for them; and, with a secretless client, sts:GetWebIdentityToken, ' +
        'which takes no resource either and is bounded by conditions on audience, algorithm and duration. Every ' +
        'other statement names its resources.',
    });
  }

  /**
   * Who may reach the API at all. The fence is made of Deny statements only; it admits nobody by itself:
   * - Deny every principal outside the admitted accounts / organization (the deploying account by default).
   * - PRIVATE: deny every request that does not arrive through one of the configured VPC endpoints.
   * The only Allow statements are the grants of principals known by ARN (config principals and
   * grantFetchToken / grantInvalidate), each on exactly its client's route. An account-wide Allow would hand
   * every client to any role of that account holding `execute-api:Invoke` on `*` (AdministratorAccess does).
   * Principals of this app get identity policies instead and are not named here.
   */
  private addResourcePolicy(props: TokenBrokerProps): void {
    const stack = Stack.of(this);
    const everything = 'execute-api:/*';
    const admittedAccounts = props.allowedAccounts ?? (props.allowedOrgId === undefined ? [stack.account] : []);
    const outsideAdmitted: Record<string, string | string[]> = {};
    if (admittedAccounts.length > 0) outsideAdmitted['aws:PrincipalAccount'] = admittedAccounts;
    if (props.allowedOrgId !== undefined) outsideAdmitted['aws:PrincipalOrgID'] = props.allowedOrgId;
    this.api.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'DenyOutsideAdmittedCallers',
        effect: iam.Effect.DENY,
        principals: [new iam.AnyPrincipal()],
        actions: ['execute-api:Invoke'],
        resources: [everything],
        // Both keys in one operator must hold to deny: a caller in a listed account OR in the org passes.
        conditions: { StringNotEquals: outsideAdmitted },
      }),
    );
    if (props.vpcEndpointIds !== undefined) {
      this.api.addToResourcePolicy(
        new iam.PolicyStatement({
          sid: 'DenyOutsideVpcEndpoints',
          effect: iam.Effect.DENY,
          principals: [new iam.AnyPrincipal()],
          actions: ['execute-api:Invoke'],
          resources: [everything],
          conditions: { StringNotEquals: { 'aws:SourceVpce': props.vpcEndpointIds } },
        }),
      );
    }
  }

  /** The resource policy as synthesized: every route Allow names its principals, and it fits API Gateway's limit. */
  private checkResourcePolicy(): string[] {
    const cfnApi = this.api.node.defaultChild as apigateway.CfnRestApi;
    const policy = Stack.of(this).resolve(cfnApi.policy) as { Statement?: ResourcePolicyStatement[] } | undefined;
    if (policy === undefined) return [];
    const problems: string[] = [];
    for (const statement of policy.Statement ?? []) {
      if (statement.Effect === 'Allow' && principalValues(statement.Principal).includes('*')) {
        problems.push(
          `the API's resource policy allows every principal ("*") on ${JSON.stringify(statement.Resource)}: ` +
            'grant named principals (their ARNs) instead',
        );
      }
    }
    const stored = JSON.stringify(policy).replaceAll('execute-api:/', expandedExecuteApiPrefix);
    if (stored.length > maxResourcePolicyChars) {
      problems.push(
        `the API's resource policy would be ${stored.length} characters as API Gateway stores it (its resources ` +
          `expanded to full ARNs), over API Gateway's limit of ${maxResourcePolicyChars}: every principal known only ` +
          'by ARN (allowedPrincipals, adminPrincipals, grants to an ArnPrincipal) is named there. List fewer ' +
          'principals per client, or grant principals of this app through identity policies (grantFetchToken / ' +
          'grantInvalidate with the role itself rather than its ARN).',
      );
    }
    return problems;
  }

  private addTokenRoute(): void {
    const validator = this.api.addRequestValidator('RequestValidator', {
      requestValidatorName: 'token-request',
      validateRequestBody: true,
      validateRequestParameters: true,
    });
    const model = this.api.addModel('TokenRequest', {
      contentType: 'application/json',
      modelName: 'TokenRequest',
      description: 'Optional body of POST /clients/{client}/token',
      schema: {
        schema: apigateway.JsonSchemaVersion.DRAFT4,
        title: 'TokenRequest',
        type: apigateway.JsonSchemaType.OBJECT,
        additionalProperties: false,
        properties: {
          scope: { type: apigateway.JsonSchemaType.STRING, minLength: 1, maxLength: maxScopeLength },
          audience: { type: apigateway.JsonSchemaType.STRING, minLength: 1, maxLength: maxTargetLength },
          resource: { type: apigateway.JsonSchemaType.STRING, minLength: 1, maxLength: maxTargetLength },
          minTtl: { type: apigateway.JsonSchemaType.INTEGER, minimum: 0, maximum: maxMinTtlSeconds },
          forceRefresh: { type: apigateway.JsonSchemaType.BOOLEAN },
        },
      },
    });
    // A rejected body answers in the same OAuth error shape as the function does.
    this.api.addGatewayResponse('BadRequestBody', {
      type: apigateway.ResponseType.BAD_REQUEST_BODY,
      statusCode: '400',
      templates: {
        'application/json': '{"error":"invalid_request","error_description":"$context.error.validationErrorString"}',
      },
    });
    /*
     * API Gateway's own refusals answer {"message": ...} unless customized. These are the ones a caller meets
     * for its own mistakes (no or a bad signature, no grant, an oversized body): they answer in the OAuth shape
     * too, keeping API Gateway's message (messageString is that message as a quoted JSON string). Throttling
     * (429) and integration failures (5XX) keep API Gateway's shape: the broker has no error code for them.
     */
    const oauthShaped: [apigateway.ResponseType, string, string][] = [
      [apigateway.ResponseType.ACCESS_DENIED, '403', 'access_denied'],
      [apigateway.ResponseType.MISSING_AUTHENTICATION_TOKEN, '403', 'access_denied'],
      [apigateway.ResponseType.INVALID_SIGNATURE, '403', 'access_denied'],
      [apigateway.ResponseType.EXPIRED_TOKEN, '403', 'access_denied'],
      [apigateway.ResponseType.REQUEST_TOO_LARGE, '413', 'invalid_request'],
    ];
    for (const [type, statusCode, error] of oauthShaped) {
      this.api.addGatewayResponse(type.responseType, {
        type,
        statusCode,
        templates: {
          'application/json': `{"error":"${error}","error_description":$context.error.messageString}`,
        },
      });
    }

    const token = this.api.root.addResource('clients').addResource('{client}').addResource('token');
    // Through the alias the handler serves API Gateway's events on; each method adds its own permission to it.
    const integration = new apigateway.LambdaIntegration(this.apiGatewayAlias, { proxy: true, allowTestInvoke: false });
    token.addMethod('POST', integration, {
      authorizationType: apigateway.AuthorizationType.IAM,
      requestValidator: validator,
      requestModels: { 'application/json': model },
      requestParameters: { 'method.request.path.client': true },
    });
    // Invalidation: the same resource, its own IAM resource (DELETE/clients/<name>/token), no body.
    const parametersOnly = this.api.addRequestValidator('AdminRequestValidator', {
      requestValidatorName: 'admin-request',
      validateRequestBody: false,
      validateRequestParameters: true,
    });
    token.addMethod('DELETE', integration, {
      authorizationType: apigateway.AuthorizationType.IAM,
      requestValidator: parametersOnly,
      requestParameters: { 'method.request.path.client': true },
    });
    for (const method of this.api.methods) {
      Validations.of(method).acknowledge({
        id: 'AwsSolutions-COG4',
        reason:
          'Callers are workloads, not users: the method uses AWS_IAM (SigV4) authorization, and per-client ' +
          'access is an IAM grant on the route. A Cognito user pool authorizer does not fit machine callers.',
      });
    }
  }
}

interface ResourcePolicyStatement {
  Effect?: string;
  Principal?: unknown;
  Resource?: unknown;
}

/** Every principal a statement names, whatever its form: `"*"`, `{AWS: "..."}`, `{AWS: [...]}`. */
function principalValues(principal: unknown): unknown[] {
  if (typeof principal !== 'object' || principal === null) return [principal];
  return Object.values(principal).flatMap((value) => (Array.isArray(value) ? value : [value]));
}

/** The registry the function runs (its clients.json): without the fields only the deployment uses. */
export function runtimeRegistryOf(clients: ClientRegistry): Record<string, ClientConfig> {
  return Object.fromEntries(
    Object.entries(clients).map(
      ([name, { allowedPrincipals: _principals, adminPrincipals: _admins, secretKmsKeyArn: _key, ...client }]) => [
        name,
        client,
      ],
    ),
  );
}

/** The nested stack (0 … clientStackCount - 1) a client's aliases and grants live in: a hash of its name only. */
export function clientStackIndexOf(clientName: string): number {
  return createHash('sha256').update(clientName).digest().readUInt32BE(0) % clientStackCount;
}

type IdentityKind = 'role' | 'user';

/**
 * Whether a principal can be given identity policies by this stack: a role or user of the deploying account
 * (account roots and other accounts' principals cannot). Undefined when it cannot.
 */
function identityKindOf(arn: string, deployingAccount: string): IdentityKind | undefined {
  const [, , , , account, resource = ''] = arn.split(':');
  const kind = resource.split('/')[0];
  return account === deployingAccount && (kind === 'role' || kind === 'user') ? kind : undefined;
}

/** The principal imported so that grants add to its identity policy; the id is stable per ARN. */
function importedIdentity(scope: Construct, prefix: string, arn: string, kind: IdentityKind): iam.IRole | iam.IUser {
  const id = `${prefix}-${createHash('sha256').update(arn).digest('hex').slice(0, 16)}`;
  return kind === 'role'
    ? iam.Role.fromRoleArn(scope, id, arn, { mutable: true })
    : iam.User.fromUserArn(scope, id, arn);
}

/**
 * A resolved CloudFormation value as cdk-nag names it in a finding (`<LogicalId>` for a Ref, `<LogicalId.Attr>`
 * for a GetAtt, Fn::Join joined), so that an acknowledgement names exactly that finding.
 */
function nagRendering(value: unknown): string {
  if (typeof value === 'string') return value;
  const node = value as Record<string, unknown>;
  if (Array.isArray(node['Fn::Join'])) {
    const [delimiter, parts] = node['Fn::Join'] as [string, unknown[]];
    return parts.map(nagRendering).join(delimiter);
  }
  if (Array.isArray(node['Fn::GetAtt'])) return `<${(node['Fn::GetAtt'] as string[]).join('.')}>`;
  if (typeof node.Ref === 'string') return `<${node.Ref}>`;
  return JSON.stringify(value);
}

/** A POSIX shell word for any string: single-quoted, each embedded quote closed, escaped and reopened. */
function shellQuoted(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

/** Secret names become ARNs with the `-??????` suffix Secrets Manager appends; full ARNs are used as given. */
export function secretArnOf(stack: Stack, secretName: string): string {
  if (secretName.startsWith('arn:')) return secretName;
  return stack.formatArn({
    service: 'secretsmanager',
    resource: 'secret',
    resourceName: `${secretName}-??????`,
    arnFormat: ArnFormat.COLON_RESOURCE_NAME,
  });
}

function accessLogFormat(): apigateway.AccessLogFormat {
  const field = apigateway.AccessLogField;
  return apigateway.AccessLogFormat.custom(
    JSON.stringify({
      requestId: field.contextRequestId(),
      requestTime: field.contextRequestTime(),
      httpMethod: field.contextHttpMethod(),
      resourcePath: field.contextResourcePath(),
      path: field.contextPath(),
      status: field.contextStatus(),
      protocol: field.contextProtocol(),
      responseLength: field.contextResponseLength(),
      integrationLatency: field.contextIntegrationLatency(),
      sourceIp: field.contextIdentitySourceIp(),
      vpceId: '$context.identity.vpceId',
      caller: field.contextIdentityCaller(),
      userArn: field.contextIdentityUserArn(),
      accountId: field.contextIdentityAccountId(),
      principalOrgId: field.contextIdentityPrincipalOrgId(),
      errorMessage: field.contextErrorMessage(),
      validationError: field.contextErrorValidationErrorString(),
      xrayTraceId: field.contextXrayTraceId(),
    }),
  );
}

interface GranteePolicySize {
  arn: string;
  resourceChars: number;
  clients: Set<string>;
  /** The nested stacks it has grants in: one inline policy each. */
  policies: Set<number>;
}

/**
 * A role or user granted too many clients through identity policies would fail the deploy: IAM refuses the
 * inline policy that takes it over its limit, and CloudFormation rolls back. Counted at the longest ARNs this
 * deployment could have, and without the principal's own other inline policies, which synth cannot see.
 */
function checkGranteePolicySizes(sizes: readonly GranteePolicySize[]): void {
  const problems: string[] = [];
  for (const { arn, resourceChars, clients, policies } of sizes) {
    const kind = arn.split(':')[5]?.startsWith('user/') ? 'user' : 'role';
    const chars = resourceChars + policies.size * inlinePolicyOverheadChars;
    if (chars > maxInlinePolicyChars[kind]) {
      problems.push(
        `${arn}: its grants on ${clients.size} clients would take up to ${chars} characters of inline policy, ` +
          `over IAM's limit of ${maxInlinePolicyChars[kind]} per ${kind}, and the deploy would fail. List it ` +
          'under fewer clients (each client costs about 250 characters), or split the clients over deployments',
      );
    }
  }
  if (problems.length > 0) throw configErrorOf(problems);
}

/** The construct's props in the shape of cdk.json's `tokenBroker` settings, for the parser they share. */
function settingsOfProps(props: TokenBrokerProps): Record<string, unknown> {
  const settings: Record<string, unknown> = { clients: props.clients };
  for (const field of settingNames.filter(namedAlikeInProps)) {
    if (props[field] !== undefined) settings[field] = props[field];
  }
  if (props.stageName !== undefined) settings.stage = props.stageName;
  return settings;
}

/** The settings a prop of the same name carries: not the clients, nor those the stack or the props spell apart. */
type NamedAlikeInProps = Exclude<SettingName, 'clients' | 'stage' | 'stackName' | 'alarmTopicArn'>;
function namedAlikeInProps(name: SettingName): name is NamedAlikeInProps {
  return name !== 'clients' && name !== 'stage' && name !== 'stackName' && name !== 'alarmTopicArn';
}

/**
 * The construct is also used without the CDK app, so it checks its props with the parser `cdk synth` and the
 * local server use (lambdas/core/settings.ts), then what only the stack can tell: the deploying account's
 * principals, a secret named once by name and once by ARN, and the stack's partition. Every problem is
 * reported in one error.
 */
function checkedClientsOf(scope: Construct, props: TokenBrokerProps, serviceName: string): ClientRegistry {
  const stack = Stack.of(scope);
  const { settings, problems } = readTokenBrokerSettings(settingsOfProps(props));
  if (!serviceNamePattern.test(serviceName)) {
    problems.push(`serviceName: must be a metric dimension value (${serviceNamePattern.source})`);
  }
  if (settings !== undefined) {
    const { clients } = settings;
    if (props.allowedAccounts === undefined && props.allowedOrgId === undefined && !Token.isUnresolved(stack.account)) {
      problems.push(...unadmittedPrincipals(clients, [stack.account], 'the deploying account'));
    }
    problems.push(...secretsNamedTwice(clients, stack));
    const arns: NamedArn[] = [
      ...arnsOfRegistry(clients),
      ...(props.adminPrincipals ?? []).map((arn, index) => ({ at: `tokenBroker.adminPrincipals[${index}]`, arn })),
      ...(props.alarmTopic === undefined || Token.isUnresolved(props.alarmTopic.topicArn)
        ? []
        : [{ at: 'tokenBroker.alarmTopicArn', arn: props.alarmTopic.topicArn }]),
    ];
    problems.push(...stackPartitionProblems(scope, arns));
  }
  if (problems.length > 0 || settings === undefined) throw configErrorOf(problems);
  return settings.clients;
}

/**
 * A name and an ARN of one secret, once the stack's account and region tell where a name resolves: one secret
 * holds one OAuth client's credentials. (Two names or two ARNs of one secret are the parser's to find.)
 */
function secretsNamedTwice(clients: ClientRegistry, stack: Stack): string[] {
  if (Token.isUnresolved(stack.account) || Token.isUnresolved(stack.region)) return [];
  const first = new Map<string, { name: string; byArn: boolean }>();
  const problems: string[] = [];
  for (const [name, { secretName }] of Object.entries(clients)) {
    const byArn = secretName.startsWith('arn:');
    const identity = byArn ? secretIdentityOfArn(secretName) : `${stack.region}:${stack.account}:${secretName}`;
    const earlier = first.get(identity);
    if (earlier === undefined) first.set(identity, { name, byArn });
    else if (earlier.byArn !== byArn) {
      problems.push(
        sharedSecretProblem(`tokenBroker.clients.${name}.secretName`, `tokenBroker.clients.${earlier.name}.secretName`),
      );
    }
  }
  return problems;
}

/**
 * Every ARN the settings name must be in the stack's partition: IAM refuses a principal of another partition
 * in a policy, and the function could reach no secret or key there. With the region known the partition is
 * known at synth; env-agnostic, a CloudFormation rule makes the deploy fail before any resource is touched.
 * The parser has already refused ARNs of more than one partition, so the first one's stands for all.
 */
function stackPartitionProblems(scope: Construct, arns: readonly NamedArn[]): string[] {
  const first = arns[0];
  if (first === undefined) return [];
  const stack = Stack.of(scope);
  // Without the partition-literals flag the partition stays a token even where the region tells it.
  const stackPartition = !Token.isUnresolved(stack.partition)
    ? stack.partition
    : Token.isUnresolved(stack.region)
      ? undefined
      : RegionInfo.get(stack.region).partition;
  if (stackPartition === undefined) {
    const partition = partitionOf(first.arn);
    new CfnRule(scope, 'Partition', {
      assertions: [
        {
          assert: Fn.conditionEquals(Aws.PARTITION, partition),
          assertDescription:
            `The token broker's settings name ARNs of partition ${partition} (${first.at}): deploy it in a ` +
            'region of that partition, or name ARNs of this one',
        },
      ],
    });
    return [];
  }
  return arns
    .filter(({ arn }) => partitionOf(arn) !== stackPartition)
    .map(
      ({ at, arn }) =>
        `${at}: is in partition ${partitionOf(arn)}, but the stack is in ${stackPartition}: IAM there refuses ` +
        'the ARNs of another partition',
    );
}
