import { Stack, Validations } from 'aws-cdk-lib';
import * as apigateway from 'aws-cdk-lib/aws-apigateway';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';
import { maxScopeLength, maxTargetLength, tokenPath, tokenRoute } from '../lambdas/contract.js';
import { maxMinTtlSeconds } from '../lambdas/core/freshness.js';
import type { TokenBrokerProps } from './token-broker-props.js';

// API Gateway's limit on a REST API's resource policy, in characters as it stores the policy.
const maxResourcePolicyChars = 8192;
/*
 * API Gateway stores each `execute-api:/…` resource expanded to a full ARN. Counted with a longer partition
 * and region than any that exist, a 12-digit account and a 10-character API id, so that a policy that fits
 * here fits in every region.
 */
const expandedExecuteApiPrefix = 'arn:aws-us-gov:execute-api:ap-southeast-5:123456789012:abcdefghij/';

/** The props that shape the API: who is fenced out, how it is reached and throttled. */
export type ApiSettings = Pick<TokenBrokerProps, 'allowedAccounts' | 'allowedOrgId' | 'vpcEndpointIds' | 'throttle'>;

export interface TokenApiProps {
  readonly settings: ApiSettings;
  readonly stageName: string;
  readonly logRetention: logs.RetentionDays;
  /** What the token route integrates with: the function's API Gateway alias. */
  readonly handler: lambda.IFunction;
}

export interface TokenApi {
  readonly endpointType: apigateway.EndpointType;
  readonly accessLogGroup: logs.LogGroup;
  readonly api: apigateway.RestApi;
  readonly stage: apigateway.Stage;
}

/**
 * The IAM-authorized REST API (`Api`) and its access logs, in `scope`: the token route (POST fetches, DELETE
 * invalidates), its request validation and OAuth-shaped refusals, and the resource policy's fence, which is
 * checked again when the app is synthesized (grants add to it after construction).
 */
export function tokenApi(scope: Construct, { settings, stageName, logRetention, handler }: TokenApiProps): TokenApi {
  const endpointType =
    settings.vpcEndpointIds === undefined ? apigateway.EndpointType.REGIONAL : apigateway.EndpointType.PRIVATE;
  const accessLogGroup = new logs.LogGroup(scope, 'ApiAccessLogs', { retention: logRetention });
  const throttle = settings.throttle ?? { rateLimit: 50, burstLimit: 100 };
  const api = new apigateway.RestApi(scope, 'Api', {
    restApiName: `${Stack.of(scope).stackName}-api`,
    description: `token-broker: POST and DELETE ${tokenRoute}, IAM (SigV4) callers only`,
    endpointConfiguration: {
      types: [endpointType],
      ...(settings.vpcEndpointIds === undefined
        ? {}
        : {
            vpcEndpoints: settings.vpcEndpointIds.map((vpcEndpointId) =>
              ec2.InterfaceVpcEndpoint.fromInterfaceVpcEndpointAttributes(scope, `Endpoint-${vpcEndpointId}`, {
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
      stageName,
      accessLogDestination: new apigateway.LogGroupLogDestination(accessLogGroup),
      accessLogFormat: accessLogFormat(),
      loggingLevel: apigateway.MethodLoggingLevel.ERROR,
      dataTraceEnabled: false,
      metricsEnabled: true,
      tracingEnabled: true,
      throttlingRateLimit: throttle.rateLimit,
      throttlingBurstLimit: throttle.burstLimit,
    },
  });
  const stage = api.deploymentStage;
  addResourcePolicy(api, settings);
  // Grants add to the resource policy after construction, so its size is checked when the app is synthesized.
  scope.node.addValidation({ validate: () => resourcePolicyProblems(api) });
  addTokenRoute(api, handler);
  Validations.of(stage).acknowledge({
    id: 'AwsSolutions-APIG3',
    reason:
      'No WAF: every request must carry a SigV4 signature of an admitted IAM principal, the resource policy ' +
      'rejects other accounts before the integration runs, the body is schema-validated and the stage is ' +
      'throttled. Attach a web ACL to the stage where an organisation mandates one.',
  });
  return { endpointType, accessLogGroup, api, stage };
}

/**
 * Lets `grantee` call `method` on `clientName`'s token route: `execute-api:Invoke` on that route only. A principal
 * of this app gets an identity policy; a principal known only by ARN is named in the API's resource policy.
 */
export function grantRoute(
  api: apigateway.RestApi,
  stageName: string,
  method: 'POST' | 'DELETE',
  clientName: string,
  grantee: iam.IGrantable,
): iam.Grant {
  const path = tokenPath(clientName);
  return iam.Grant.addToPrincipalOrResource({
    grantee,
    actions: ['execute-api:Invoke'],
    resourceArns: [api.arnForExecuteApi(method, path, stageName)],
    // The resource policy belongs to the API itself, which cannot reference its own id.
    resourceSelfArns: [`execute-api:/${stageName}/${method}${path}`],
    resource: api,
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
function addResourcePolicy(api: apigateway.RestApi, settings: ApiSettings): void {
  const stack = Stack.of(api);
  const everything = 'execute-api:/*';
  const admittedAccounts = settings.allowedAccounts ?? (settings.allowedOrgId === undefined ? [stack.account] : []);
  const outsideAdmitted: Record<string, string | string[]> = {};
  if (admittedAccounts.length > 0) outsideAdmitted['aws:PrincipalAccount'] = admittedAccounts;
  if (settings.allowedOrgId !== undefined) outsideAdmitted['aws:PrincipalOrgID'] = settings.allowedOrgId;
  api.addToResourcePolicy(
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
  if (settings.vpcEndpointIds !== undefined) {
    api.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'DenyOutsideVpcEndpoints',
        effect: iam.Effect.DENY,
        principals: [new iam.AnyPrincipal()],
        actions: ['execute-api:Invoke'],
        resources: [everything],
        conditions: { StringNotEquals: { 'aws:SourceVpce': settings.vpcEndpointIds } },
      }),
    );
  }
}

/** The resource policy as synthesized: every route Allow names its principals, and it fits API Gateway's limit. */
function resourcePolicyProblems(api: apigateway.RestApi): string[] {
  const cfnApi = api.node.defaultChild as apigateway.CfnRestApi;
  const policy = Stack.of(api).resolve(cfnApi.policy) as { Statement?: ResourcePolicyStatement[] } | undefined;
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

function addTokenRoute(api: apigateway.RestApi, handler: lambda.IFunction): void {
  const validator = api.addRequestValidator('RequestValidator', {
    requestValidatorName: 'token-request',
    validateRequestBody: true,
    validateRequestParameters: true,
  });
  const model = api.addModel('TokenRequest', {
    contentType: 'application/json',
    modelName: 'TokenRequest',
    description: `Optional body of POST ${tokenRoute}`,
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
  api.addGatewayResponse('BadRequestBody', {
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
    api.addGatewayResponse(type.responseType, {
      type,
      statusCode,
      templates: {
        'application/json': `{"error":"${error}","error_description":$context.error.messageString}`,
      },
    });
  }

  const token = api.root.addResource('clients').addResource('{client}').addResource('token');
  // Through the alias the handler serves API Gateway's events on; each method adds its own permission to it.
  const integration = new apigateway.LambdaIntegration(handler, { proxy: true, allowTestInvoke: false });
  token.addMethod('POST', integration, {
    authorizationType: apigateway.AuthorizationType.IAM,
    requestValidator: validator,
    requestModels: { 'application/json': model },
    requestParameters: { 'method.request.path.client': true },
  });
  // Invalidation: the same resource, its own IAM resource (DELETE/clients/<name>/token), no body.
  const parametersOnly = api.addRequestValidator('AdminRequestValidator', {
    requestValidatorName: 'admin-request',
    validateRequestBody: false,
    validateRequestParameters: true,
  });
  token.addMethod('DELETE', integration, {
    authorizationType: apigateway.AuthorizationType.IAM,
    requestValidator: parametersOnly,
    requestParameters: { 'method.request.path.client': true },
  });
  for (const method of api.methods) {
    Validations.of(method).acknowledge({
      id: 'AwsSolutions-COG4',
      reason:
        'Callers are workloads, not users: the method uses AWS_IAM (SigV4) authorization, and per-client ' +
        'access is an IAM grant on the route. A Cognito user pool authorizer does not fit machine callers.',
    });
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
