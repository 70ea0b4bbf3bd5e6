import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as iam from 'aws-cdk-lib/aws-iam';
import { ConfigError } from '../../lambdas/core/config.js';
import { parseTokenBrokerContext } from '../../lib/context.js';
import { TokenBroker } from '../../lib/token-broker.js';
import { TokenBrokerStack } from '../../lib/token-broker-stack.js';
import {
  account,
  aliasIdIn,
  allTemplates,
  apiPolicy,
  bwell,
  callerStatements,
  cdkJson,
  clientTemplate,
  epicClient,
  identityGrantLines,
  invokePermissions,
  type Json,
  kmsKeys,
  list,
  logicalIdOf,
  type Statement,
  shipped,
  synth as synthStack,
  throughNestedOutput,
} from './support.js';

const keyArn = 'arn:aws:kms:eu-west-1:222222222222:key/1234abcd-12ab-34cd-56ef-1234567890ab';
const acmeSecretArn = 'arn:aws:secretsmanager:eu-west-1:222222222222:secret:acme/labs-AbCdEf';

const synth = (tokenBroker: unknown = shipped) => synthStack(tokenBroker);

/**
 * Every permission the function's role holds, as "Effect action resource [condition]" lines: the policies
 * attached to it (inline, managed, AWS::IAM::Policy) all count, so a new permission anywhere shows up.
 */
function rolePermissions(template: Template, stack: Stack): string[] {
  const fn = Object.values(template.findResources('AWS::Lambda::Function'))[0];
  assert.ok(fn, 'the function is in the stack');
  const roleId = fn.Properties.Role['Fn::GetAtt'][0] as string;
  const role = template.findResources('AWS::IAM::Role')[roleId]?.Properties;
  assert.ok(role, 'the function role is in the stack');
  assert.equal(role.ManagedPolicyArns, undefined, 'no managed policies');
  assert.equal(role.Policies, undefined, 'no inline policies on the role');
  assert.deepEqual(role.AssumeRolePolicyDocument.Statement, [
    { Action: 'sts:AssumeRole', Effect: 'Allow', Principal: { Service: 'lambda.amazonaws.com' } },
  ]);
  const attached = [
    ...Object.values(template.findResources('AWS::IAM::Policy')),
    ...Object.values(template.findResources('AWS::IAM::ManagedPolicy')),
  ].filter((p) => JSON.stringify(p.Properties.Roles ?? []).includes(`"${roleId}"`));
  const lines: string[] = [];
  for (const policy of attached) {
    for (const statement of policy.Properties.PolicyDocument.Statement as Statement[]) {
      for (const action of list(statement.Action)) {
        for (const resource of Array.isArray(statement.Resource) ? statement.Resource : [statement.Resource]) {
          const condition = statement.Condition === undefined ? '' : ` ${JSON.stringify(statement.Condition)}`;
          lines.push(`${statement.Effect} ${action} ${JSON.stringify(stack.resolve(resource))}${condition}`);
        }
      }
    }
  }
  return lines.sort();
}

describe("the function role's permissions, exactly", () => {
  it('default registry: the item actions and Scan on its table, the secret, its log group, X-Ray', () => {
    const { template, stack } = synth();
    const table = logicalIdOf(template, 'AWS::DynamoDB::Table');
    const fn = Object.values(template.findResources('AWS::Lambda::Function'))[0];
    const fnLogs = fn?.Properties.LoggingConfig.LogGroup.Ref as string;
    const tableArn = JSON.stringify({ 'Fn::GetAtt': [table, 'Arn'] });
    assert.deepEqual(
      rolePermissions(template, stack),
      [
        // Exactly what lambdas/adapters/dynamodb-cache.ts calls: no Query, no batch.
        `Allow dynamodb:DeleteItem ${tableArn}`,
        `Allow dynamodb:GetItem ${tableArn}`,
        `Allow dynamodb:PutItem ${tableArn}`,
        // countIssuance: the one atomic counter, a conditional ADD.
        `Allow dynamodb:UpdateItem ${tableArn}`,
        // revokeClient finds a client's cached tokens by scanning the (small) table.
        `Allow dynamodb:Scan ${tableArn}`,
        `Allow logs:CreateLogStream ${JSON.stringify({ 'Fn::GetAtt': [fnLogs, 'Arn'] })}`,
        `Allow logs:PutLogEvents ${JSON.stringify({ 'Fn::GetAtt': [fnLogs, 'Arn'] })}`,
        `Allow secretsmanager:GetSecretValue "arn:aws:secretsmanager:us-east-1:${account}:secret:token-broker/bwell-??????"`,
        // The deployment's sealing key, which the stack generates.
        `Allow secretsmanager:GetSecretValue ${JSON.stringify({ Ref: logicalIdOf(template, 'AWS::SecretsManager::Secret') })}`,
        // X-Ray's PutTraceSegments / PutTelemetryRecords accept no resource ARN: "*" is the only option.
        'Allow xray:PutTelemetryRecords "*"',
        'Allow xray:PutTraceSegments "*"',
      ].sort(),
    );
  });

  it('several clients: each secret once (names get the -?????? suffix, ARNs stay as given) and kms:Decrypt via Secrets Manager', () => {
    const { template, stack } = synth({
      clients: {
        bwell,
        'bwell-write': { ...bwell, secretName: 'token-broker/bwell-write', defaultScope: 'system/*.write' },
        'acme-labs': {
          wellKnownUrl: 'https://login.acme.example/.well-known/oauth-authorization-server',
          secretName: acmeSecretArn,
          scopes: ['read'],
          secretKmsKeyArn: keyArn,
        },
      },
    });
    const secrets = rolePermissions(template, stack).filter((line) => /secretsmanager|kms/.test(line));
    assert.deepEqual(secrets, [
      `Allow kms:Decrypt "${keyArn}" {"StringEquals":{"kms:ViaService":"secretsmanager.eu-west-1.amazonaws.com"}}`,
      `Allow secretsmanager:GetSecretValue "${acmeSecretArn}"`,
      `Allow secretsmanager:GetSecretValue "arn:aws:secretsmanager:us-east-1:${account}:secret:token-broker/bwell-??????"`,
      `Allow secretsmanager:GetSecretValue "arn:aws:secretsmanager:us-east-1:${account}:secret:token-broker/bwell-write-??????"`,
      `Allow secretsmanager:GetSecretValue ${JSON.stringify({ Ref: logicalIdOf(template, 'AWS::SecretsManager::Secret') })}`,
    ]);
    const others = rolePermissions(template, stack).filter((line) => !/secretsmanager|kms/.test(line));
    assert.equal(others.length, 9, 'nothing else changes');
  });

  it('a client signing with a KMS key: kms:Sign and kms:GetPublicKey on that key alone', () => {
    // The client also publishes another key, which the function may not sign with.
    const { template, stack } = synth({ clients: { bwell, epic: { ...epicClient, signingAlgorithm: 'RS384' } } });
    const kms = rolePermissions(template, stack).filter((line) => line.includes(' kms:'));
    assert.deepEqual(kms, [`Allow kms:GetPublicKey "${kmsKeys.signing}"`, `Allow kms:Sign "${kmsKeys.signing}"`]);
  });

  it('a secretless client: sts:GetWebIdentityToken for its audience and algorithm, five minutes at most', () => {
    const federated = (audience: string, extra: Record<string, unknown> = {}) => ({
      wellKnownUrl: 'https://login.microsoftonline.com/tenant/v2.0/.well-known/openid-configuration',
      secretName: `token-broker/${audience.length}`,
      scopes: ['api://fhir/.default'],
      authMethod: 'private_key_jwt',
      webIdentityAudience: audience,
      ...extra,
    });
    const { template, stack } = synth({
      clients: {
        bwell,
        entra: federated('api://AzureADTokenExchange'),
        keycloak: federated('https://keycloak.example/realms/fhir', { webIdentitySigningAlgorithm: 'ES384' }),
      },
    });
    const sts = rolePermissions(template, stack).filter((line) => line.includes(' sts:'));
    assert.deepEqual(sts, [
      `Allow sts:GetWebIdentityToken "*" ${JSON.stringify({
        'ForAllValues:StringEquals': {
          'sts:IdentityTokenAudience': ['api://AzureADTokenExchange', 'https://keycloak.example/realms/fhir'],
        },
        StringEquals: { 'sts:SigningAlgorithm': ['RS256', 'ES384'] },
        NumericLessThanEquals: { 'sts:DurationSeconds': 300 },
      })}`,
    ]);
    const { template: without, stack: plain } = synth({ clients: { bwell } });
    assert.deepEqual(
      rolePermissions(without, plain).filter((line) => line.includes(' sts:')),
      [],
    );
  });

  it('grants made by callers do not touch the function role', () => {
    const { template, stack } = synth({
      clients: {
        bwell: {
          ...bwell,
          allowedPrincipals: [`arn:aws:iam::${account}:role/caller`],
          adminPrincipals: [`arn:aws:iam::${account}:role/ops`],
        },
      },
    });
    assert.equal(rolePermissions(template, stack).length, 11);
  });
});

describe('the API resource policy', () => {
  it('default: denies every principal outside the deploying account, and allows nothing by itself', () => {
    const { template } = synth();
    assert.deepEqual(apiPolicy(template), [
      {
        Sid: 'DenyOutsideAdmittedCallers',
        Effect: 'Deny',
        Principal: { AWS: '*' },
        Action: 'execute-api:Invoke',
        Resource: 'execute-api:/*',
        Condition: { StringNotEquals: { 'aws:PrincipalAccount': [account] } },
      },
    ]);
  });

  it('an env-agnostic stack uses the deploying account from CloudFormation', () => {
    const app = new App({ context: { ...cdkJson.context, 'aws:cdk:bundling-stacks': [] } });
    const stack = new TokenBrokerStack(app, 'Agnostic', { config: parseTokenBrokerContext(shipped) });
    const statement = apiPolicy(Template.fromStack(stack))[0];
    assert.deepEqual(statement?.Condition, {
      StringNotEquals: { 'aws:PrincipalAccount': [{ Ref: 'AWS::AccountId' }] },
    });
  });

  it('allowedAccounts: fences the API to exactly those accounts, and allows nobody by itself', () => {
    const { template } = synth({ ...shipped, allowedAccounts: ['222222222222', '333333333333'] });
    assert.deepEqual(apiPolicy(template), [
      {
        Sid: 'DenyOutsideAdmittedCallers',
        Effect: 'Deny',
        Principal: { AWS: '*' },
        Action: 'execute-api:Invoke',
        Resource: 'execute-api:/*',
        Condition: { StringNotEquals: { 'aws:PrincipalAccount': ['222222222222', '333333333333'] } },
      },
    ]);
  });

  it('allowedOrgId: fences the API to the organization, and allows nobody by itself', () => {
    const { template } = synth({ ...shipped, allowedOrgId: 'o-a1b2c3d4e5' });
    assert.deepEqual(apiPolicy(template), [
      {
        Sid: 'DenyOutsideAdmittedCallers',
        Effect: 'Deny',
        Principal: { AWS: '*' },
        Action: 'execute-api:Invoke',
        Resource: 'execute-api:/*',
        Condition: { StringNotEquals: { 'aws:PrincipalOrgID': 'o-a1b2c3d4e5' } },
      },
    ]);
  });

  it('accounts and organization together: a caller passes the fence by either', () => {
    const { template } = synth({ ...shipped, allowedAccounts: ['222222222222'], allowedOrgId: 'o-a1b2c3d4e5' });
    const deny = apiPolicy(template).find((s) => s.Sid === 'DenyOutsideAdmittedCallers');
    assert.deepEqual(deny?.Condition, {
      StringNotEquals: { 'aws:PrincipalAccount': ['222222222222'], 'aws:PrincipalOrgID': 'o-a1b2c3d4e5' },
    });
    assert.deepEqual(
      apiPolicy(template).map((s) => s.Sid),
      ['DenyOutsideAdmittedCallers'],
    );
  });

  it('private: additionally denies every request that does not come through the configured VPC endpoints', () => {
    const ids = ['vpce-0123456789abcdef0', 'vpce-0fedcba9876543210'];
    const { template } = synth({ ...shipped, vpcEndpointIds: ids });
    const policy = apiPolicy(template);
    assert.deepEqual(
      policy.map((s) => s.Sid),
      ['DenyOutsideAdmittedCallers', 'DenyOutsideVpcEndpoints'],
    );
    assert.deepEqual(policy[1], {
      Sid: 'DenyOutsideVpcEndpoints',
      Effect: 'Deny',
      Principal: { AWS: '*' },
      Action: 'execute-api:Invoke',
      Resource: 'execute-api:/*',
      Condition: { StringNotEquals: { 'aws:SourceVpce': ids } },
    });
  });
});

/** Each Allow of the API's resource policy as "principal action resource" lines (merged statements split). */
function allowLines(statements: Statement[]): string[] {
  return statements
    .filter((s) => s.Effect === 'Allow')
    .flatMap((s) =>
      list((s.Principal as { AWS: string | string[] }).AWS).flatMap((principal) =>
        list(s.Action).flatMap((action) =>
          list(s.Resource as string | string[]).map((r) => `${principal} ${action} ${r}`),
        ),
      ),
    )
    .sort();
}

/** The API's resource policy as synthesized with validations skipped: what CloudFormation would be handed. */
function unvalidatedPolicy(tokenBroker: unknown): { statements: Statement[]; json: string } {
  const { app, stack } = synthStack(tokenBroker);
  const template = app.synth({ skipValidation: true }).getStackByName(stack.stackName).template;
  const api = Object.values(template.Resources as Record<string, { Type: string; Properties: Json }>).find(
    (r) => r.Type === 'AWS::ApiGateway::RestApi',
  );
  const policy = api?.Properties.Policy as { Statement: Statement[] };
  return { statements: policy.Statement, json: JSON.stringify(policy) };
}

/** `count` clients, each with its own fetching and its own admin principal in another account. */
function crossAccountClients(count: number, fetchersPerClient = 1) {
  const client = {
    wellKnownUrl: 'https://idp.example/.well-known/openid-configuration',
    scopes: ['r'],
  };
  return Object.fromEntries(
    Array.from({ length: count }, (_, c) => [
      `c${c}`,
      {
        ...client,
        secretName: `secret-${c}`,
        allowedPrincipals: Array.from(
          { length: fetchersPerClient },
          (_, i) => `arn:aws:iam::222222222222:role/app-${c}-${i}`,
        ),
        adminPrincipals: [`arn:aws:iam::222222222222:role/ops-${c}`],
      },
    ]),
  );
}

describe('cross-account callers are admitted by name on their routes, never by account (issue 10)', () => {
  const outsiderApp = 'arn:aws:iam::222222222222:role/app';
  const outsiderOps = 'arn:aws:iam::222222222222:role/ops';
  const outsiderRoot = 'arn:aws:iam::333333333333:root';
  const insider = `arn:aws:iam::${account}:role/local`;
  const clients = {
    bwell: { ...bwell, allowedPrincipals: [outsiderApp], adminPrincipals: [outsiderOps] },
    'acme-labs': { ...bwell, secretName: 'token-broker/acme-labs', allowedPrincipals: [insider, outsiderRoot] },
  };
  // The insider (a role of the deploying account) is granted by an identity policy instead.
  const expected = [
    `${outsiderApp} execute-api:Invoke execute-api:/v1/POST/clients/bwell/token`,
    `${outsiderOps} execute-api:Invoke execute-api:/v1/DELETE/clients/bwell/token`,
    `${outsiderRoot} execute-api:Invoke execute-api:/v1/POST/clients/acme-labs/token`,
  ].sort();
  const fences = {
    allowedAccounts: { allowedAccounts: [account, '222222222222', '333333333333'] },
    allowedOrgId: { allowedOrgId: 'o-a1b2c3d4e5' },
    'both together': { allowedAccounts: [account], allowedOrgId: 'o-a1b2c3d4e5' },
  };

  for (const [name, fence] of Object.entries(fences)) {
    it(`${name}: every Allow names configured principals, each on an exact client route`, () => {
      const { template } = synth({ ...fence, clients });
      const routes = new Set(
        ['bwell', 'acme-labs'].flatMap((c) => ['POST', 'DELETE'].map((m) => `execute-api:/v1/${m}/clients/${c}/token`)),
      );
      const configured = new Set([outsiderApp, outsiderOps, outsiderRoot]);
      const allows = apiPolicy(template).filter((s) => s.Effect === 'Allow');
      assert.ok(allows.length > 0, 'the configured principals are allowed');
      for (const statement of allows) {
        for (const resource of list(statement.Resource as string | string[])) {
          assert.ok(routes.has(resource), `${statement.Sid ?? 'an Allow'} on ${resource}`);
        }
        for (const principal of list((statement.Principal as { AWS: string | string[] }).AWS)) {
          assert.ok(configured.has(principal), `${statement.Sid ?? 'an Allow'} names ${principal}`);
        }
        assert.equal(statement.Condition, undefined, 'no account-wide allow by condition');
      }
    });

    it(`${name}: a configured principal of another account is allowed exactly its routes`, () => {
      const { template } = synth({ ...fence, clients });
      assert.deepEqual(allowLines(apiPolicy(template)), expected);
    });

    it(`${name}: a configured role of the deploying account gets its routes and alias by identity policy only`, () => {
      const { template, broker } = synth({ ...fence, clients });
      assert.deepEqual(identityGrantLines(clientTemplate(broker, 'acme-labs'), template), [
        'local execute-api:Invoke /v1/POST/clients/acme-labs/token',
        'local lambda:InvokeFunction alias/acme-labs',
      ]);
      assert.ok(!JSON.stringify(apiPolicy(template)).includes(insider), 'not in the API resource policy');
      const permissions = invokePermissions(allTemplates(template, broker));
      assert.ok(!JSON.stringify(permissions).includes(insider), 'not in a Lambda permission');
      assert.ok(JSON.stringify(permissions).includes(outsiderRoot), 'while the outsider is');
    });
  }

  it('fails the synth when the resource policy would exceed 8,192 characters, naming the size, the limit and the way out', () => {
    const { stack } = synthStack({ allowedAccounts: [account, '222222222222'], clients: crossAccountClients(8, 24) });
    assert.throws(
      () => Template.fromStack(stack),
      (error: unknown) => {
        const message = error instanceof Error ? error.message : '';
        assert.match(message, /the API's resource policy would be (\d+) characters/);
        assert.ok(Number(/would be (\d+) characters/.exec(message)?.[1]) > 8192, message);
        assert.match(message, /limit of 8192/);
        assert.match(message, /fewer principals per client/i);
        assert.match(message, /identity policies/);
        return true;
      },
    );
  });

  it('counts execute-api resources at the length of the full ARNs API Gateway stores', () => {
    const tokenBroker = { allowedAccounts: [account, '222222222222'], clients: crossAccountClients(20) };
    const { json } = unvalidatedPolicy(tokenBroker);
    assert.ok(json.length < 8192, `as synthesized: ${json.length} characters`);
    assert.throws(() => synth(tokenBroker).template, /resource policy would be \d+ characters/);
  });

  it('checks grants made after construction', () => {
    const tokenBroker = { allowedAccounts: [account, '222222222222'], clients: crossAccountClients(12) };
    assert.doesNotThrow(() => synth(tokenBroker).template);
    const { stack, broker } = synth(tokenBroker);
    for (let i = 0; i < 120; i++) {
      broker.grantFetchToken(new iam.ArnPrincipal(`arn:aws:iam::222222222222:role/late-${i}`), `c${i % 12}`);
    }
    assert.throws(() => Template.fromStack(stack), /resource policy would be \d+ characters/);
  });

  it('fails the synth when a grant would allow every principal on a route', () => {
    const { stack, broker } = synth({ ...shipped, allowedAccounts: [account, '222222222222'] });
    broker.grantFetchToken(new iam.AnyPrincipal(), 'bwell');
    assert.throws(() => Template.fromStack(stack), /allows every principal \("\*"\)/);
  });
});

describe('per-client grants', () => {
  function withCaller(
    tokenBroker: unknown = { clients: { bwell, other: { ...bwell, secretName: 'token-broker/other' } } },
  ) {
    const { stack, broker } = synth(tokenBroker);
    const caller = new iam.Role(stack, 'Caller', { assumedBy: new iam.AccountRootPrincipal() });
    return { stack, broker, caller };
  }

  it('grantFetchToken: execute-api:Invoke on that client POST route of the stage, nothing else', () => {
    const { stack, broker, caller } = withCaller();
    broker.grantFetchToken(caller, 'bwell');
    const template = Template.fromStack(stack);
    const statements = callerStatements(template, stack);
    assert.equal(statements.length, 1);
    assert.equal(statements[0]?.Action, 'execute-api:Invoke');
    assert.deepEqual(statements[0]?.Resource, stack.resolve(broker.tokenRouteArn('bwell')));
    assert.match(JSON.stringify(statements[0]?.Resource), /\/v1\/POST\/clients\/bwell\/token"/);
    assert.equal(apiPolicy(template).length, 1, 'a principal of this account needs no resource-policy entry');
  });

  it('grantInvokeForClient: lambda:InvokeFunction on that client alias only', () => {
    const { stack, broker, caller } = withCaller();
    broker.grantInvokeForClient(caller, 'bwell');
    const template = Template.fromStack(stack);
    const alias = aliasIdIn(clientTemplate(broker, 'bwell'), 'bwell');
    assert.deepEqual(
      callerStatements(template, stack).map((s) => ({ ...s, Resource: throughNestedOutput(broker, s.Resource) })),
      [{ Action: 'lambda:InvokeFunction', Effect: 'Allow', Resource: { Ref: alias } }],
    );
  });

  it('a principal known only by ARN is named in the resource policies: the route statement and the alias permission', () => {
    const { stack, broker } = synth({ ...shipped, allowedAccounts: [account, '222222222222'] });
    const outsider = new iam.ArnPrincipal('arn:aws:iam::222222222222:role/consumer');
    broker.grantFetchToken(outsider, 'bwell');
    broker.grantInvokeForClient(outsider, 'bwell');
    const template = Template.fromStack(stack);
    assert.deepEqual(apiPolicy(template).at(-1), {
      Effect: 'Allow',
      Principal: { AWS: 'arn:aws:iam::222222222222:role/consumer' },
      Action: 'execute-api:Invoke',
      Resource: 'execute-api:/v1/POST/clients/bwell/token',
    });
    const nested = clientTemplate(broker, 'bwell');
    const alias = aliasIdIn(nested, 'bwell');
    nested.hasResourceProperties('AWS::Lambda::Permission', {
      Action: 'lambda:InvokeFunction',
      FunctionName: { Ref: alias },
      Principal: 'arn:aws:iam::222222222222:role/consumer',
    });
  });

  it('allowedPrincipals of the deploying account become both grants by identity policy, on that client only', () => {
    const principals = [`arn:aws:iam::${account}:role/app`, `arn:aws:iam::${account}:user/ci`];
    const { template, broker } = synth({
      clients: {
        bwell: { ...bwell, allowedPrincipals: principals },
        other: { ...bwell, secretName: 'token-broker/other' },
      },
    });
    assert.deepEqual(identityGrantLines(clientTemplate(broker, 'bwell'), template), [
      'app execute-api:Invoke /v1/POST/clients/bwell/token',
      'app lambda:InvokeFunction alias/bwell',
      'ci execute-api:Invoke /v1/POST/clients/bwell/token',
      'ci lambda:InvokeFunction alias/bwell',
    ]);
    assert.deepEqual(allowLines(apiPolicy(template)), [], 'no Allow in the API resource policy');
    assert.deepEqual(invokePermissions(allTemplates(template, broker)), [], 'no Lambda permission');
  });

  it('allowedPrincipals of other accounts become both grants in the resource policies, on that client only', () => {
    const principals = ['arn:aws:iam::222222222222:role/app', 'arn:aws:iam::222222222222:user/ci'];
    const { template, broker } = synth({
      allowedAccounts: [account, '222222222222'],
      clients: {
        bwell: { ...bwell, allowedPrincipals: principals },
        other: { ...bwell, secretName: 'token-broker/other' },
      },
    });
    assert.deepEqual(
      allowLines(apiPolicy(template)),
      principals.map((arn) => `${arn} execute-api:Invoke execute-api:/v1/POST/clients/bwell/token`).sort(),
    );
    const bwellAlias = aliasIdIn(clientTemplate(broker, 'bwell'), 'bwell');
    assert.deepEqual(
      invokePermissions(allTemplates(template, broker)),
      principals.map((arn) => ['lambda:InvokeFunction', { Ref: bwellAlias }, arn]).sort(),
    );
    // The root's two are the function role's and the invoke trail's log delivery role's.
    for (const nested of allTemplates(template, broker))
      nested.resourceCountIs('AWS::IAM::Policy', nested === template ? 2 : 0);
  });

  it('unknown client names throw in every grant method', () => {
    const { broker, caller } = withCaller();
    assert.throws(() => broker.grantFetchToken(caller, 'nope'), ConfigError);
    assert.throws(() => broker.grantInvokeForClient(caller, 'nope'), /unknown client "nope"/);
    assert.throws(() => broker.aliasFor('nope'), /unknown client/);
    assert.throws(() => broker.tokenRouteArn('__proto__'), /unknown client/);
  });

  it('a configured principal outside the admitted accounts fails the synth, naming client and field', () => {
    assert.throws(
      () =>
        synth({
          allowedAccounts: [account],
          clients: { bwell: { ...bwell, allowedPrincipals: ['arn:aws:iam::999999999999:role/stranger'] } },
        }),
      /tokenBroker\.clients\.bwell\.allowedPrincipals\[0\]: account 999999999999 is not admitted by tokenBroker\.allowedAccounts/,
    );
    assert.throws(
      () => synth({ clients: { bwell: { ...bwell, allowedPrincipals: ['arn:aws:iam::999999999999:root'] } } }),
      /tokenBroker\.clients\.bwell\.allowedPrincipals\[0\]: account 999999999999 is not admitted by the deploying account/,
    );
  });

  it('the construct works in any stack and validates a registry handed to it directly', () => {
    const stack = new Stack(new App({ context: { ...cdkJson.context, 'aws:cdk:bundling-stacks': [] } }), 'Host');
    assert.throws(
      () => new TokenBroker(stack, 'Broker', { clients: { bwell: { ...bwell, secretName: 'bad name!' } } }),
      /tokenBroker\.clients\.bwell\.secretName/,
    );
  });
});

describe('the DynamoDB actions match what the runtime calls', () => {
  it('every DynamoDB *Command the function code imports is granted, and nothing else', () => {
    const root = new URL('../../lambdas/', import.meta.url);
    const files = ['adapters', 'core', 'entry']
      .flatMap((dir) => readdirSync(new URL(`${dir}/`, root)).map((f) => new URL(`${dir}/${f}`, root)))
      .filter((url) => url.pathname.endsWith('.ts'));
    const imported = new Set<string>();
    for (const file of files) {
      const text = readFileSync(file, 'utf8');
      const from = text.match(/import\s*\{([^}]*)\}\s*from\s*'@aws-sdk\/client-dynamodb'/);
      for (const name of from?.[1]?.match(/\b[A-Za-z]+Command\b/g) ?? []) imported.add(name);
    }
    const used = [...imported].map((command) => `dynamodb:${command.replace(/Command$/, '')}`).sort();
    const { template, stack } = synth();
    const granted = rolePermissions(template, stack)
      .filter((line) => line.includes(' dynamodb:'))
      .map((line) => line.split(' ')[1])
      .sort();
    assert.deepEqual(granted, used);
  });
});
