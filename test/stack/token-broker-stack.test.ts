import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { App } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { partitionKey, ttlAttribute } from '../../lambdas/adapters/dynamodb-schema.js';
import { environmentVariables } from '../../lambdas/entry/environment.js';
import { apiGatewayAliasName } from '../../lambdas/entry/invoke.js';
import { tokenRequestFields } from '../../lambdas/entry/token-fields.js';
import { parseTokenBrokerContext } from '../../lib/context.js';
import { registryFileName, runtimeRegistryOf } from '../../lib/token-broker.js';
import { TokenBrokerStack } from '../../lib/token-broker-stack.js';
import { aliasesOf, kmsKeys } from './support.js';

const cdkJson = JSON.parse(readFileSync(new URL('../../cdk.json', import.meta.url), 'utf8'));
const shippedContext = cdkJson.context.tokenBroker;
const env = { account: '111111111111', region: 'us-east-1' };

const twoClients = {
  clients: {
    ...shippedContext.clients,
    'acme-labs': {
      wellKnownUrl: 'https://login.acme.example/.well-known/oauth-authorization-server',
      secretName: 'arn:aws:secretsmanager:us-east-1:111111111111:secret:acme/labs-AbCdEf',
      scopes: ['read'],
    },
  },
};

/** Unit-level synth: bundling skipped, so these tests do not need esbuild or the handler. */
function synth(tokenBroker: unknown = shippedContext, stackEnv: typeof env | undefined = env) {
  const app = new App({ context: { ...cdkJson.context, 'aws:cdk:bundling-stacks': [], tokenBroker } });
  const stack = new TokenBrokerStack(app, 'TokenBroker', {
    config: parseTokenBrokerContext(tokenBroker),
    ...(stackEnv === undefined ? {} : { env: stackEnv }),
  });
  return { app, stack, template: Template.fromStack(stack) };
}

function onlyLogicalId(template: Template, type: string, props?: object): string {
  const ids = Object.keys(template.findResources(type, props === undefined ? undefined : { Properties: props }));
  assert.equal(ids.length, 1, `expected exactly one ${type}, found ${ids.join(', ')}`);
  return ids[0] as string;
}

describe('the token cache table', () => {
  const { template } = synth();

  it('is keyed by the partition key the adapter writes, on demand, encrypted with a KMS key', () => {
    template.resourceCountIs('AWS::DynamoDB::Table', 1);
    template.hasResourceProperties('AWS::DynamoDB::Table', {
      KeySchema: [{ AttributeName: partitionKey, KeyType: 'HASH' }],
      AttributeDefinitions: [{ AttributeName: partitionKey, AttributeType: 'S' }],
      BillingMode: 'PAY_PER_REQUEST',
      SSESpecification: { SSEEnabled: true },
    });
  });

  it('expires items on the TTL attribute the adapter writes', () => {
    assert.equal(ttlAttribute, 'expiresAt');
    template.hasResourceProperties('AWS::DynamoDB::Table', {
      TimeToLiveSpecification: { AttributeName: ttlAttribute, Enabled: true },
    });
  });

  it('is destroyed with the stack (it is a cache)', () => {
    template.hasResource('AWS::DynamoDB::Table', { DeletionPolicy: 'Delete', UpdateReplacePolicy: 'Delete' });
  });
});

describe('the function', () => {
  const { template } = synth();
  const tableId = onlyLogicalId(template, 'AWS::DynamoDB::Table');

  it('runs nodejs22.x on arm64 with active tracing', () => {
    template.resourceCountIs('AWS::Lambda::Function', 1);
    template.hasResourceProperties('AWS::Lambda::Function', {
      Runtime: 'nodejs22.x',
      Architectures: ['arm64'],
      Handler: 'index.handler',
      TracingConfig: { Mode: 'Active' },
      MemorySize: 512,
    });
  });

  it('times out before API Gateway does (29 s)', () => {
    const fn = Object.values(template.findResources('AWS::Lambda::Function'))[0];
    const timeout = fn?.Properties.Timeout as number;
    assert.ok(timeout > 0 && timeout < 29, `timeout ${timeout}`);
  });

  it('logs to its own log group, with a retention', () => {
    const fn = Object.values(template.findResources('AWS::Lambda::Function'))[0];
    const logGroupId = fn?.Properties.LoggingConfig.LogGroup.Ref as string;
    const group = template.findResources('AWS::Logs::LogGroup')[logGroupId];
    assert.ok(group, 'the function log group is in the stack');
    assert.equal(typeof group.Properties.RetentionInDays, 'number');
  });

  it('is pointed at its bundled registry file in TOKEN_BROKER_CLIENTS_FILE and its table in TOKEN_BROKER_TABLE', () => {
    const fn = Object.values(template.findResources('AWS::Lambda::Function'))[0];
    const variables = fn?.Properties.Environment.Variables as Record<string, unknown>;
    assert.equal(variables[environmentVariables.clientsFile], registryFileName);
    // The registry is in the bundle (test/stack/bundle.test.ts), not in the 4 KB of environment.
    assert.equal(variables[environmentVariables.clients], undefined);
    assert.deepEqual(variables[environmentVariables.tableName], { Ref: tableId });
    // Source maps are shipped for offline decoding, not loaded at cold start.
    assert.equal(variables.NODE_OPTIONS, undefined);
    assert.equal(variables[environmentVariables.refreshWindowSeconds], undefined);
  });

  it('keeps deploy-time fields out of the function registry and passes the refresh window when set', () => {
    const clients = {
      bwell: {
        ...shippedContext.clients.bwell,
        allowedPrincipals: ['arn:aws:iam::111111111111:role/caller'],
        adminPrincipals: ['arn:aws:iam::111111111111:role/ops'],
        secretKmsKeyArn: kmsKeys.secret,
      },
    };
    const { template: t, stack } = synth({ clients, refreshWindowSeconds: 120 });
    const fn = Object.values(t.findResources('AWS::Lambda::Function'))[0];
    const variables = fn?.Properties.Environment.Variables as Record<string, string>;
    assert.deepEqual(runtimeRegistryOf(stack.broker.clients), shippedContext.clients);
    assert.equal(variables[environmentVariables.refreshWindowSeconds], '120');
  });
});

describe('the REST API', () => {
  const { template, stack } = synth(twoClients);
  const apiAliasId = onlyLogicalId(template, 'AWS::Lambda::Alias', { Name: apiGatewayAliasName });

  it('authorizes every method, OPTIONS included, with AWS_IAM', () => {
    const methods = template.findResources('AWS::ApiGateway::Method');
    assert.ok(Object.keys(methods).length > 0);
    for (const [id, method] of Object.entries(methods)) {
      assert.equal(method.Properties.AuthorizationType, 'AWS_IAM', `${id} (${method.Properties.HttpMethod})`);
    }
  });

  it('has the one resource /clients/{client}/token: POST (token) and DELETE (invalidation), Lambda proxies to the API Gateway alias', () => {
    template.resourceCountIs('AWS::ApiGateway::Method', 2);
    const parts = Object.values(template.findResources('AWS::ApiGateway::Resource')).map((r) => r.Properties.PathPart);
    assert.deepEqual(parts.sort(), ['clients', 'token', '{client}']);
    template.hasResourceProperties('AWS::ApiGateway::Method', {
      HttpMethod: 'POST',
      ResourceId: { Ref: Match.stringLikeRegexp('clientsclienttoken') },
      Integration: { Type: 'AWS_PROXY', IntegrationHttpMethod: 'POST' },
    });
    template.hasResourceProperties('AWS::ApiGateway::Method', {
      HttpMethod: 'DELETE',
      ResourceId: { Ref: Match.stringLikeRegexp('clientsclienttoken') },
      Integration: { Type: 'AWS_PROXY', IntegrationHttpMethod: 'POST' },
    });
    for (const method of Object.values(template.findResources('AWS::ApiGateway::Method'))) {
      assert.match(JSON.stringify(method.Properties.Integration.Uri), new RegExp(`\\{"Ref":"${apiAliasId}"\\}`));
    }
  });

  it('validates the request: the client path parameter and the optional JSON body of the token fields', () => {
    const validatorId = onlyLogicalId(template, 'AWS::ApiGateway::RequestValidator', {
      ValidateRequestBody: true,
      ValidateRequestParameters: true,
    });
    const modelId = onlyLogicalId(template, 'AWS::ApiGateway::Model');
    template.hasResourceProperties('AWS::ApiGateway::Method', {
      HttpMethod: 'POST',
      RequestValidatorId: { Ref: validatorId },
      RequestModels: { 'application/json': { Ref: modelId } },
      RequestParameters: { 'method.request.path.client': true },
    });
    template.hasResourceProperties('AWS::ApiGateway::Model', {
      ContentType: 'application/json',
      Schema: {
        type: 'object',
        additionalProperties: false,
        properties: {
          scope: { type: 'string', minLength: 1, maxLength: 1024 },
          audience: { type: 'string', minLength: 1, maxLength: 1024 },
          resource: { type: 'string', minLength: 1, maxLength: 1024 },
          minTtl: { type: 'integer', minimum: 0, maximum: 86_400 },
          forceRefresh: { type: 'boolean' },
        },
      },
    });
    const schema = Object.values(template.findResources('AWS::ApiGateway::Model'))[0]?.Properties.Schema;
    assert.equal(schema.required, undefined, 'the body is optional');
    // The gateway lets through exactly the fields the function reads, or a caller meets a 400 the function lacks.
    assert.deepEqual(Object.keys(schema.properties).sort(), [...tokenRequestFields].sort());
  });

  it('writes JSON access logs to a log group with a retention, and throttles and traces the stage', () => {
    const stageId = onlyLogicalId(template, 'AWS::ApiGateway::Stage');
    const stageProps = template.findResources('AWS::ApiGateway::Stage')[stageId]?.Properties;
    const destination = stageProps.AccessLogSetting.DestinationArn['Fn::GetAtt'][0] as string;
    const group = template.findResources('AWS::Logs::LogGroup')[destination];
    assert.ok(group, 'access log group in the stack');
    assert.equal(typeof group.Properties.RetentionInDays, 'number');
    const format = JSON.parse(stageProps.AccessLogSetting.Format);
    for (const field of ['requestId', 'httpMethod', 'resourcePath', 'status', 'userArn', 'accountId']) {
      assert.ok(field in format, `access log field ${field}`);
    }
    template.hasResourceProperties('AWS::ApiGateway::Stage', {
      TracingEnabled: true,
      MethodSettings: Match.arrayWith([
        Match.objectLike({
          HttpMethod: '*',
          ResourcePath: '/*',
          ThrottlingRateLimit: Match.anyValue(),
          ThrottlingBurstLimit: Match.anyValue(),
          LoggingLevel: 'ERROR',
          DataTraceEnabled: false,
        }),
      ]),
    });
    const settings = stageProps.MethodSettings[0];
    assert.ok(settings.ThrottlingRateLimit > 0 && settings.ThrottlingBurstLimit >= settings.ThrottlingRateLimit);
  });

  it('is REGIONAL by default and creates no account-level CloudWatch role', () => {
    template.hasResourceProperties('AWS::ApiGateway::RestApi', { EndpointConfiguration: { Types: ['REGIONAL'] } });
    template.resourceCountIs('AWS::ApiGateway::Account', 0);
  });

  it('is PRIVATE on the configured VPC endpoints when vpcEndpointIds are set', () => {
    const { template: t } = synth({ ...shippedContext, vpcEndpointIds: ['vpce-0123456789abcdef0'] });
    t.hasResourceProperties('AWS::ApiGateway::RestApi', {
      EndpointConfiguration: { Types: ['PRIVATE'], VpcEndpointIds: ['vpce-0123456789abcdef0'] },
    });
  });

  it('answers a rejected body in the OAuth error shape', () => {
    template.hasResourceProperties('AWS::ApiGateway::GatewayResponse', {
      ResponseType: 'BAD_REQUEST_BODY',
      StatusCode: '400',
      ResponseTemplates: { 'application/json': Match.stringLikeRegexp('"error":"invalid_request"') },
    });
  });

  it('grants API Gateway invoke on its alias for these two methods only', () => {
    const permissions = Object.values(template.findResources('AWS::Lambda::Permission')).filter(
      (p) => p.Properties.Principal === 'apigateway.amazonaws.com',
    );
    assert.equal(permissions.length, 2, 'one per method, no test-invoke permission');
    for (const permission of permissions) {
      assert.deepEqual(permission.Properties.FunctionName, { Ref: apiAliasId });
    }
    const sources = permissions.map((p) => JSON.stringify(stack.resolve(p.Properties.SourceArn))).sort();
    assert.match(sources[0] ?? '', /\/DELETE\/clients\/\*\/token"/);
    assert.match(sources[1] ?? '', /\/POST\/clients\/\*\/token"/);
  });
});

describe('two Lambda aliases per client, and one for API Gateway', () => {
  const { template, stack } = synth(twoClients);

  it('names them <client>, <client>_admin and api_gateway, all on the one published version', () => {
    const versionId = onlyLogicalId(template, 'AWS::Lambda::Version');
    const fnId = onlyLogicalId(template, 'AWS::Lambda::Function');
    const aliases = aliasesOf(template, stack.broker);
    assert.deepEqual(
      aliases.map((a) => a.name).sort(),
      ['acme-labs', 'acme-labs_admin', apiGatewayAliasName, 'bwell', 'bwell_admin'].sort(),
    );
    for (const alias of aliases) {
      assert.deepEqual(alias.functionName, { Ref: fnId });
      assert.deepEqual(alias.functionVersion, { 'Fn::GetAtt': [versionId, 'Version'] });
    }
  });
});

describe('outputs', () => {
  const { template } = synth(twoClients);

  it('exports the API URL, function name and ARN, table and dashboard names, and nothing per client', () => {
    const fnId = onlyLogicalId(template, 'AWS::Lambda::Function');
    const tableId = onlyLogicalId(template, 'AWS::DynamoDB::Table');
    template.hasOutput('ApiUrl', { Value: Match.objectLike({ 'Fn::Join': Match.anyValue() }) });
    template.hasOutput('FunctionName', { Value: { Ref: fnId } });
    template.hasOutput('FunctionArn', { Value: { 'Fn::GetAtt': [fnId, 'Arn'] } });
    template.hasOutput('TableName', { Value: { Ref: tableId } });
    template.hasOutput('SealingSecretArn', { Value: { Ref: onlyLogicalId(template, 'AWS::SecretsManager::Secret') } });
    template.hasOutput('DashboardName', { Value: { Ref: onlyLogicalId(template, 'AWS::CloudWatch::Dashboard') } });
    // 200 clients would need 600 outputs (CloudFormation allows 200): docs/deploy.md says how to form them.
    assert.deepEqual(
      Object.keys(template.toJSON().Outputs ?? {})
        .filter((id) => !/^TokenBrokerApiEndpoint/.test(id))
        .sort(),
      ['ApiUrl', 'DashboardName', 'FunctionArn', 'FunctionName', 'SealingSecretArn', 'TableName'],
    );
  });
});

describe('the sealing key', () => {
  const { template } = synth();
  const secretId = () => onlyLogicalId(template, 'AWS::SecretsManager::Secret');

  it('is one secret the stack creates with a generated random value of 64 letters and digits', () => {
    template.hasResourceProperties('AWS::SecretsManager::Secret', {
      GenerateSecretString: { PasswordLength: 64, ExcludePunctuation: true, IncludeSpace: false },
    });
    assert.equal(template.findResources('AWS::SecretsManager::Secret')[secretId()]?.Properties.SecretString, undefined);
  });

  it('is named to the function by ARN in TOKEN_BROKER_SEALING_SECRET_ARN', () => {
    template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: { Variables: Match.objectLike({ [environmentVariables.sealingSecretArn]: { Ref: secretId() } }) },
    });
  });

  it('may be read by the function role, and nothing else may be done with it', () => {
    template.hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          {
            Sid: 'SealingKey',
            Effect: 'Allow',
            Action: 'secretsmanager:GetSecretValue',
            Resource: { Ref: secretId() },
          },
        ]),
      },
    });
    const mentions = Object.values(template.findResources('AWS::IAM::Policy')).flatMap((policy) =>
      (policy.Properties.PolicyDocument.Statement as { Action: unknown; Resource: unknown }[]).filter((statement) =>
        JSON.stringify(statement.Resource).includes(secretId()),
      ),
    );
    assert.deepEqual(
      mentions.map((statement) => statement.Action),
      ['secretsmanager:GetSecretValue'],
    );
  });
});
