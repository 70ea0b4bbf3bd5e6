import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as iam from 'aws-cdk-lib/aws-iam';
import { ConfigError } from '../../lambdas/core/config.js';
import { adminAliasOf, apiGatewayAliasName } from '../../lambdas/entry/invoke.js';
import { runtimeRegistryOf } from '../../lib/token-broker.js';
import {
  account,
  aliasesOf,
  aliasIdIn,
  allTemplates,
  apiPolicy,
  bwell,
  callerStatements,
  clientTemplate,
  identityGrantLines,
  invokePermissions,
  list,
  logicalIdOf,
  synth as synthStack,
  throughNestedOutput,
} from './support.js';

/*
 * The administrative side of the broker (issue #6): DELETE /clients/{client}/token and the admin alias
 * <client>_admin, each granted separately from fetching a token.
 */

const twoClients = { clients: { bwell, 'acme-labs': { ...bwell, secretName: 'token-broker/acme-labs' } } };

const synth = (tokenBroker: unknown = twoClients) => synthStack(tokenBroker);

const aliasId = (template: Template, name: string) =>
  logicalIdOf(template, 'AWS::Lambda::Alias', (p) => p.Name === name);

/** The API resource policy's Allow entries as "principal action resource" lines (merged statements split). */
function routeGrants(template: Template): string[] {
  return apiPolicy(template)
    .filter((s) => s.Effect === 'Allow' && s.Sid === undefined)
    .flatMap((s) =>
      list((s.Principal as { AWS: string | string[] }).AWS).flatMap((principal) =>
        list(s.Action).flatMap((action) =>
          list(s.Resource as string | string[]).map((r) => `${principal} ${action} ${r}`),
        ),
      ),
    )
    .sort();
}

describe('the admin route DELETE /clients/{client}/token', () => {
  const { template, stack } = synth();
  const apiAliasId = aliasId(template, apiGatewayAliasName);
  const deleteMethod = () =>
    Object.values(template.findResources('AWS::ApiGateway::Method', { Properties: { HttpMethod: 'DELETE' } }));

  it('is one AWS_IAM method on the token resource, a Lambda proxy to the API Gateway alias', () => {
    const methods = deleteMethod();
    assert.equal(methods.length, 1);
    template.hasResourceProperties('AWS::ApiGateway::Method', {
      HttpMethod: 'DELETE',
      AuthorizationType: 'AWS_IAM',
      ResourceId: { Ref: Match.stringLikeRegexp('clientsclienttoken') },
      Integration: { Type: 'AWS_PROXY', IntegrationHttpMethod: 'POST' },
      RequestParameters: { 'method.request.path.client': true },
    });
    assert.match(JSON.stringify(methods[0]?.Properties.Integration.Uri), new RegExp(`\\{"Ref":"${apiAliasId}"\\}`));
  });

  it('shares the resource with POST: the same ResourceId, so the same {client} path', () => {
    const byMethod = Object.fromEntries(
      Object.values(template.findResources('AWS::ApiGateway::Method')).map((m) => [
        m.Properties.HttpMethod,
        m.Properties.ResourceId,
      ]),
    );
    assert.deepEqual(Object.keys(byMethod).sort(), ['DELETE', 'POST']);
    assert.deepEqual(byMethod.DELETE, byMethod.POST);
  });

  it('has no request body model, and validates only the path parameter', () => {
    const method = deleteMethod()[0]?.Properties;
    assert.equal(method.RequestModels, undefined);
    const validators = template.findResources('AWS::ApiGateway::RequestValidator');
    const validator = validators[method.RequestValidatorId.Ref]?.Properties;
    assert.deepEqual(
      { body: validator.ValidateRequestBody, parameters: validator.ValidateRequestParameters },
      { body: false, parameters: true },
    );
  });

  it('lets API Gateway invoke its alias for DELETE on this API only', () => {
    const permissions = Object.values(template.findResources('AWS::Lambda::Permission'))
      .map((p) => p.Properties)
      .filter((p) => p.Principal === 'apigateway.amazonaws.com');
    const sources = permissions.map((p) => JSON.stringify(stack.resolve(p.SourceArn)));
    assert.equal(sources.filter((s) => /\/DELETE\/clients\/\*\/token"/.test(s)).length, 1);
    for (const permission of permissions) assert.deepEqual(permission.FunctionName, { Ref: apiAliasId });
  });

  it('is a separate IAM resource from the token route: DELETE/clients/<name>/token', () => {
    const { broker, stack: s } = synth();
    assert.match(JSON.stringify(s.resolve(broker.invalidateRouteArn('bwell'))), /\/v1\/DELETE\/clients\/bwell\/token"/);
    assert.notDeepEqual(s.resolve(broker.invalidateRouteArn('bwell')), s.resolve(broker.tokenRouteArn('bwell')));
  });
});

describe('one admin alias per client', () => {
  const { template, broker } = synth();

  it('is named <client>_admin, as the handler expects, and sits on the same version as the token alias', () => {
    const versionId = logicalIdOf(template, 'AWS::Lambda::Version');
    const fnId = logicalIdOf(template, 'AWS::Lambda::Function');
    const aliases = aliasesOf(template, broker);
    assert.deepEqual(
      aliases.map((a) => a.name).sort(),
      ['acme-labs', adminAliasOf('acme-labs'), 'bwell', adminAliasOf('bwell'), apiGatewayAliasName].sort(),
    );
    assert.equal(adminAliasOf('bwell'), 'bwell_admin');
    for (const alias of aliases) {
      assert.deepEqual(alias.functionName, { Ref: fnId });
      assert.deepEqual(alias.functionVersion, { 'Fn::GetAtt': [versionId, 'Version'] });
    }
  });

  it("sits in its client's nested stack, beside the client's token alias", () => {
    for (const client of ['bwell', 'acme-labs']) {
      assert.equal(Stack.of(broker.adminAliasFor(client)), Stack.of(broker.aliasFor(client)));
      assert.equal(Stack.of(broker.adminAliasFor(client)).nested, true);
    }
  });

  it('adminAliasFor returns it, and throws for an unknown client', () => {
    const { broker } = synth();
    assert.equal(broker.adminAliasFor('bwell').aliasName, 'bwell_admin');
    assert.throws(() => broker.adminAliasFor('nope'), ConfigError);
  });
});

describe('grantInvalidate', () => {
  function withCaller() {
    const { stack, broker } = synth();
    const caller = new iam.Role(stack, 'Caller', { assumedBy: new iam.AccountRootPrincipal() });
    return { stack, broker, caller };
  }

  it('in-app role: an identity policy with DELETE on that route and invoke on that admin alias, nothing else', () => {
    const { stack, broker, caller } = withCaller();
    broker.grantInvalidate(caller, 'bwell');
    const template = Template.fromStack(stack);
    const statements = callerStatements(template, stack);
    const bwellTemplate = clientTemplate(broker, 'bwell');
    assert.deepEqual(
      statements.map((s) => [s.Effect, s.Action, throughNestedOutput(broker, s.Resource)]),
      [
        ['Allow', 'execute-api:Invoke', stack.resolve(broker.invalidateRouteArn('bwell'))],
        ['Allow', 'lambda:InvokeFunction', { Ref: aliasIdIn(bwellTemplate, 'bwell_admin') }],
      ],
    );
    const text = JSON.stringify(statements);
    assert.doesNotMatch(text, /\/POST\//, 'no token route');
    assert.doesNotMatch(text, /acme/i, 'no other client');
    assert.doesNotMatch(text, /ClientAlias/, 'not the token alias');
    assert.equal(apiPolicy(template).length, 1, 'a principal of this account needs no resource-policy entry');
    assert.deepEqual(invokePermissions(allTemplates(template, broker)), [], 'and no Lambda permission');
  });

  it('returns a grant that succeeded on the principal', () => {
    const { broker, caller } = withCaller();
    const grant = broker.grantInvalidate(caller, 'bwell');
    assert.equal(grant.success, true);
    assert.equal(grant.principalStatements.length, 2);
  });

  it('principal known only by ARN: the DELETE route in the API resource policy and a permission on the admin alias', () => {
    const { stack, broker } = synth({ ...twoClients, allowedAccounts: [account, '222222222222'] });
    const outsider = new iam.ArnPrincipal('arn:aws:iam::222222222222:role/ops');
    broker.grantInvalidate(outsider, 'bwell');
    const template = Template.fromStack(stack);
    assert.deepEqual(routeGrants(template), [
      'arn:aws:iam::222222222222:role/ops execute-api:Invoke execute-api:/v1/DELETE/clients/bwell/token',
    ]);
    assert.deepEqual(invokePermissions(allTemplates(template, broker)), [
      [
        'lambda:InvokeFunction',
        { Ref: aliasIdIn(clientTemplate(broker, 'bwell'), 'bwell_admin') },
        'arn:aws:iam::222222222222:role/ops',
      ],
    ]);
  });

  it('fetch grants give no invalidation, and invalidation grants give no token', () => {
    const { stack, broker, caller } = withCaller();
    broker.grantFetchToken(caller, 'bwell');
    broker.grantInvokeForClient(caller, 'bwell');
    const template = Template.fromStack(stack);
    const text = JSON.stringify(callerStatements(template, stack));
    assert.doesNotMatch(text, /DELETE/);
    assert.doesNotMatch(text, /AdminAlias/);
  });

  it('throws for a client the registry does not declare', () => {
    const { broker, caller } = withCaller();
    assert.throws(() => broker.grantInvalidate(caller, 'nope'), /unknown client "nope"/);
    assert.throws(() => broker.invalidateRouteArn('__proto__'), ConfigError);
  });
});

describe('adminPrincipals in the config', () => {
  const admins = [`arn:aws:iam::${account}:role/ops`, `arn:aws:iam::${account}:user/oncall`];
  const fetcher = `arn:aws:iam::${account}:role/app`;
  const outsiders = ['arn:aws:iam::222222222222:role/ops', 'arn:aws:iam::222222222222:root'];
  const acme = { ...bwell, secretName: 'token-broker/acme-labs' };

  it('of the deploying account: exactly the two admin grants on that client as identity policies, no fetch grant', () => {
    const { template, broker } = synth({
      clients: { bwell: { ...bwell, adminPrincipals: admins }, 'acme-labs': acme },
    });
    assert.deepEqual(identityGrantLines(clientTemplate(broker, 'bwell'), template), [
      'oncall execute-api:Invoke /v1/DELETE/clients/bwell/token',
      'oncall lambda:InvokeFunction alias/bwell_admin',
      'ops execute-api:Invoke /v1/DELETE/clients/bwell/token',
      'ops lambda:InvokeFunction alias/bwell_admin',
    ]);
    assert.deepEqual(routeGrants(template), [], 'named in no resource policy');
    assert.deepEqual(invokePermissions(allTemplates(template, broker)), []);
  });

  it('of other accounts: exactly the two admin grants on that client in the resource policies', () => {
    const { template, broker } = synth({
      allowedAccounts: [account, '222222222222'],
      clients: { bwell: { ...bwell, adminPrincipals: outsiders }, 'acme-labs': acme },
    });
    assert.deepEqual(
      routeGrants(template),
      outsiders.map((arn) => `${arn} execute-api:Invoke execute-api:/v1/DELETE/clients/bwell/token`).sort(),
    );
    const adminAlias = { Ref: aliasIdIn(clientTemplate(broker, 'bwell'), 'bwell_admin') };
    assert.deepEqual(
      invokePermissions(allTemplates(template, broker)),
      outsiders
        .map((arn) => ['lambda:InvokeFunction', adminAlias, arn])
        .sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b))),
    );
  });

  it('sit beside allowedPrincipals without mixing: each principal gets only its own grants', () => {
    const { template, broker } = synth({
      allowedAccounts: [account, '222222222222'],
      clients: {
        bwell: { ...bwell, allowedPrincipals: [fetcher, outsiders[1]], adminPrincipals: [admins[0], outsiders[0]] },
      },
    });
    assert.deepEqual(identityGrantLines(clientTemplate(broker, 'bwell'), template), [
      'app execute-api:Invoke /v1/POST/clients/bwell/token',
      'app lambda:InvokeFunction alias/bwell',
      'ops execute-api:Invoke /v1/DELETE/clients/bwell/token',
      'ops lambda:InvokeFunction alias/bwell_admin',
    ]);
    assert.deepEqual(
      routeGrants(template),
      [
        `${outsiders[0]} execute-api:Invoke execute-api:/v1/DELETE/clients/bwell/token`,
        `${outsiders[1]} execute-api:Invoke execute-api:/v1/POST/clients/bwell/token`,
      ].sort(),
    );
    const nested = clientTemplate(broker, 'bwell');
    assert.deepEqual(
      invokePermissions(allTemplates(template, broker)),
      [
        ['lambda:InvokeFunction', { Ref: aliasIdIn(nested, 'bwell_admin') }, outsiders[0]],
        ['lambda:InvokeFunction', { Ref: aliasIdIn(nested, 'bwell') }, outsiders[1]],
      ].sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b))),
    );
  });

  it('stay out of the registry the function receives', () => {
    const { broker } = synth({ clients: { bwell: { ...bwell, adminPrincipals: admins } } });
    assert.deepEqual(runtimeRegistryOf(broker.clients), { bwell });
  });

  it('leave the audience and resource lists in the registry the function receives', () => {
    const targets = {
      audiences: ['https://api.test/'],
      defaultAudience: 'https://api.test/',
      resources: ['https://fhir.test/r4'],
      defaultResource: 'https://fhir.test/r4',
    };
    const { broker } = synth({ clients: { bwell: { ...bwell, ...targets, adminPrincipals: admins } } });
    assert.deepEqual(runtimeRegistryOf(broker.clients), { bwell: { ...bwell, ...targets } });
  });

  it('must be admitted like allowedPrincipals: the synth fails naming client and field', () => {
    assert.throws(
      () =>
        synth({
          allowedAccounts: [account],
          clients: { bwell: { ...bwell, adminPrincipals: [admins[0], 'arn:aws:iam::999999999999:role/stranger'] } },
        }),
      /tokenBroker\.clients\.bwell\.adminPrincipals\[1\]: account 999999999999 is not admitted by tokenBroker\.allowedAccounts/,
    );
    assert.throws(
      () => synth({ clients: { bwell: { ...bwell, adminPrincipals: ['arn:aws:iam::999999999999:root'] } } }),
      /tokenBroker\.clients\.bwell\.adminPrincipals\[0\]: account 999999999999 is not admitted by the deploying account/,
    );
    assert.doesNotThrow(() =>
      synth({
        allowedOrgId: 'o-a1b2c3d4e5',
        clients: { bwell: { ...bwell, adminPrincipals: ['arn:aws:iam::999999999999:role/ops'] } },
      }),
    );
  });
});
