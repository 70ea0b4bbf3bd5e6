import { type NestedStack, Stack } from 'aws-cdk-lib';
import type * as apigateway from 'aws-cdk-lib/aws-apigateway';
import type * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import type * as iam from 'aws-cdk-lib/aws-iam';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import { tokenPath } from '../lambdas/contract.js';
import { type ClientRegistry, ConfigError } from '../lambdas/core/config.js';
import { defaultServiceName } from '../lambdas/entry/environment.js';
import { publishesJwks } from '../lambdas/entry/jwks.js';
import { InvokeAuditTrail } from './audit-trail.js';
import { brokerFunction } from './broker-function.js';
import { checkedClientsOf } from './checked-settings.js';
import { ClientGrants } from './client-grants.js';
import { type ClientAliasPair, ClientStacks, clientAliasPair, stackQuotaProblems } from './client-stacks.js';
import { HostedJwks } from './hosted-jwks.js';
import { type TokenBrokerAlarms, TokenBrokerMonitoring } from './monitoring.js';
import { stagedRegistryFile } from './registry-file.js';
import { grantRoute, tokenApi } from './token-api.js';
import { defaultStageName, type TokenBrokerProps } from './token-broker-props.js';
import { sealingKeySecret, tokenTable } from './token-table.js';

/**
 * The only resource; `{client}` is the registry's client name, which IAM grants match literally.
 * POST fetches the client's token, DELETE drops its cached tokens: two IAM resources, granted separately.
 */
export { tokenPath } from '../lambdas/contract.js';
// What other modules and the construct's users import from here, wherever it now lives.
export { clientStackCount, clientStackIndexOf } from './client-stacks.js';
export { secretArnOf } from './function-role.js';
export { registryFileName, runtimeRegistryOf } from './registry-file.js';
export { defaultStageName, type ThrottleSettings, type TokenBrokerProps } from './token-broker-props.js';

/**
 * The OAuth2 client-credentials token broker: one function behind an IAM-authorized REST API (through the
 * alias `api_gateway`) and two Lambda aliases per client (`<client>` for tokens, `<client>_admin` for
 * invalidation), a DynamoDB token cache, and per-client grants that IAM enforces natively:
 * `execute-api:Invoke` on a client's POST (fetch) or DELETE (invalidate) route over HTTP,
 * `lambda:InvokeFunction` on its token or admin alias. Alarms and a dashboard watch it.
 *
 * Each part has its own builder in lib/, which creates its constructs directly in this construct (or in a nested
 * client stack) under the ids the deployed stacks already have: token-table.ts, broker-function.ts (with
 * function-role.ts and handler-function.ts), audit-trail.ts, token-api.ts, client-stacks.ts, client-grants.ts,
 * monitoring.ts, hosted-jwks.ts. Moving a construct under a new scope would change its logical id and replace
 * the resource; test/stack/template-equality.test.ts holds the templates to that.
 */
export class TokenBroker extends Construct {
  readonly clients: ClientRegistry;
  readonly clientNames: readonly string[];
  readonly table: dynamodb.Table;
  /** The deployment's random key that tokens in the table are sealed under; only the function reads it. */
  readonly sealingSecret: secretsmanager.Secret;
  /** A NodejsFunction when built from source; a plain Function from the pre-bundled handler. */
  readonly fn: lambda.Function;
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
  private readonly aliasPairs = new Map<string, ClientAliasPair>();
  private readonly nestedClientStacks: ClientStacks;

  constructor(scope: Construct, id: string, props: TokenBrokerProps) {
    super(scope, id);
    this.stageName = props.stageName ?? defaultStageName;
    this.serviceName = props.serviceName ?? defaultServiceName;
    this.clients = checkedClientsOf(this, props, this.serviceName);
    this.clientNames = Object.keys(this.clients);
    const legacyRootAliases = new Set(props.legacyRootAliases ?? []);
    const logRetention = props.logRetention ?? logs.RetentionDays.ONE_MONTH;
    const registryFile = stagedRegistryFile(this, this.clients);

    this.table = tokenTable(this);
    this.sealingSecret = sealingKeySecret(this);
    const fn = brokerFunction(this, {
      clients: this.clients,
      table: this.table,
      sealingSecret: this.sealingSecret,
      serviceName: this.serviceName,
      settings: props,
      logRetention,
      registryFile,
    });
    this.logGroup = fn.logGroup;
    this.role = fn.role;
    this.fn = fn.fn;
    this.apiGatewayAlias = fn.apiGatewayAlias;
    if (props.auditTrail ?? true) {
      this.invokeAuditTrail = new InvokeAuditTrail(this, 'InvokeAudit', { fn: this.fn, logRetention });
    }

    const api = tokenApi(this, {
      settings: props,
      stageName: this.stageName,
      logRetention,
      handler: this.apiGatewayAlias,
    });
    this.endpointType = api.endpointType;
    this.accessLogGroup = api.accessLogGroup;
    this.api = api.api;
    this.stage = api.stage;

    // Each client's aliases sit in its nested stack, so that 200 clients fit CloudFormation's quotas; those of a
    // deployment older than that layout stay where they were made.
    this.nestedClientStacks = new ClientStacks(this);
    for (const name of this.clientNames) {
      const place = legacyRootAliases.has(name) ? this : this.nestedClientStacks.of(name);
      this.aliasPairs.set(name, clientAliasPair(place, name, this.fn.currentVersion));
    }
    const grants = new ClientGrants(this, this.nestedClientStacks, legacyRootAliases);
    for (const name of this.clientNames) {
      // Config-declared callers get the same grants the methods below give to constructs.
      (this.clients[name]?.allowedPrincipals ?? []).forEach((arn, index) => {
        const principal = grants.principalFor(name, 'allowedPrincipals', index, arn);
        this.grantFetchToken(principal, name);
        this.grantInvokeForClient(principal, name);
      });
      (this.clients[name]?.adminPrincipals ?? []).forEach((arn, index) => {
        this.grantInvalidate(grants.principalFor(name, 'adminPrincipals', index, arn), name);
      });
    }
    grants.grantPlatformAdmins(props.adminPrincipals ?? [], this.api, this.fn, this.stageName);
    grants.nameGranteePolicies();
    grants.checkPolicySizes(this.clients, this.stageName);
    // Grants and cross-stack references add resources and outputs until synthesis: counted then.
    this.node.addValidation({ validate: () => stackQuotaProblems([Stack.of(this), ...this.clientStacks]) });

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
        registryFile,
        serviceName: this.serviceName,
        logRetention,
      });
    }
  }

  /** The construct's CloudWatch alarms (see docs/deploy.md, "Alarms"). */
  get alarms(): TokenBrokerAlarms {
    return this.monitoring.alarms;
  }

  /** The nested stacks of the per-client aliases and grants (a client's is `Stack.of(aliasFor(client))`). */
  get clientStacks(): NestedStack[] {
    return this.nestedClientStacks.all;
  }

  /** The CloudWatch dashboard of the broker's metrics. */
  get dashboard(): cloudwatch.Dashboard {
    return this.monitoring.dashboard;
  }

  /** The alias a client's direct invocations must go through (its name is the client's). */
  aliasFor(clientName: string): lambda.Alias {
    const pair = this.aliasPairs.get(this.requireClient(clientName));
    if (pair === undefined) throw new Error(`no alias for client ${clientName}`);
    return pair.token;
  }

  /** The alias a client's invalidations by direct invoke must go through: `<client>_admin`. */
  adminAliasFor(clientName: string): lambda.Alias {
    const pair = this.aliasPairs.get(this.requireClient(clientName));
    if (pair === undefined) throw new Error(`no admin alias for client ${clientName}`);
    return pair.admin;
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
    return grantRoute(this.api, this.stageName, 'POST', this.requireClient(clientName), grantee);
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
    const overHttp = grantRoute(this.api, this.stageName, 'DELETE', this.requireClient(clientName), grantee);
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
}
