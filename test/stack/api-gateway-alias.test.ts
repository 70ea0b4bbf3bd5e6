import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as iam from 'aws-cdk-lib/aws-iam';
import { ConfigError, parseClientRegistry } from '../../lambdas/core/config.js';
import { adminAliasSuffix, apiGatewayAliasName } from '../../lambdas/entry/invoke.js';
import { account, allTemplates, bwell, logicalIdOf, synth } from './support.js';

/*
 * Issue 10, item 1: API Gateway invokes a dedicated alias, the only one through which the handler serves its
 * events, and nothing at all may invoke the unqualified function or a version.
 */

const withPrincipals = {
  clients: {
    bwell: {
      ...bwell,
      allowedPrincipals: [`arn:aws:iam::${account}:role/app`],
      adminPrincipals: [`arn:aws:iam::${account}:role/ops`],
    },
    'acme-labs': { ...bwell, secretName: 'token-broker/acme-labs' },
  },
};

function integrationUriOf(aliasId: string) {
  return {
    'Fn::Join': ['', [Match.stringLikeRegexp(':lambda:path/2015-03-31/functions/$'), { Ref: aliasId }, '/invocations']],
  };
}

describe('the API Gateway alias', () => {
  const { template, broker } = synth(withPrincipals);
  const fnId = logicalIdOf(template, 'AWS::Lambda::Function');
  const versionId = logicalIdOf(template, 'AWS::Lambda::Version');
  const aliasId = logicalIdOf(template, 'AWS::Lambda::Alias', (p) => p.Name === apiGatewayAliasName);

  it('is named so that no client alias or admin alias can have its name', () => {
    assert.throws(() => parseClientRegistry({ [apiGatewayAliasName]: bwell }), ConfigError);
    assert.ok(!apiGatewayAliasName.endsWith(adminAliasSuffix));
    assert.equal(broker.apiGatewayAlias.aliasName, apiGatewayAliasName);
  });

  it('points at the published version the client aliases use', () => {
    template.hasResourceProperties('AWS::Lambda::Alias', {
      Name: apiGatewayAliasName,
      FunctionName: { Ref: fnId },
      FunctionVersion: { 'Fn::GetAtt': [versionId, 'Version'] },
    });
  });

  it('is what the POST and DELETE integrations invoke', () => {
    for (const method of ['POST', 'DELETE']) {
      template.hasResourceProperties('AWS::ApiGateway::Method', {
        HttpMethod: method,
        Integration: { Type: 'AWS_PROXY', Uri: integrationUriOf(aliasId) },
      });
    }
  });

  it("holds API Gateway's invoke permissions, one per method, scoped to this API", () => {
    const apiId = logicalIdOf(template, 'AWS::ApiGateway::RestApi');
    for (const method of ['POST', 'DELETE']) {
      template.hasResourceProperties('AWS::Lambda::Permission', {
        Action: 'lambda:InvokeFunction',
        Principal: 'apigateway.amazonaws.com',
        FunctionName: { Ref: aliasId },
        SourceArn: {
          'Fn::Join': ['', Match.arrayWith([{ Ref: apiId }, Match.stringLikeRegexp(`^/${method}/clients/\\*/token$`)])],
        },
      });
    }
  });

  it('leaves no permission on the unqualified function or a version, with config principals and grants', () => {
    const { stack, broker: granting } = synth({ ...withPrincipals, allowedAccounts: [account, '222222222222'] });
    const outsider = new iam.ArnPrincipal('arn:aws:iam::222222222222:role/consumer');
    granting.grantFetchToken(outsider, 'acme-labs');
    granting.grantInvokeForClient(outsider, 'acme-labs');
    granting.grantInvalidate(outsider, 'acme-labs');
    const granted = Template.fromStack(stack);
    const fn = logicalIdOf(granted, 'AWS::Lambda::Function');
    const version = logicalIdOf(granted, 'AWS::Lambda::Version');
    let count = 0;
    // Parent and nested stacks: each permission names an alias of its own template.
    for (const template of allTemplates(granted, granting)) {
      const aliases = new Set(Object.keys(template.findResources('AWS::Lambda::Alias')));
      const permissions = Object.values(template.findResources('AWS::Lambda::Permission')).map((p) => p.Properties);
      count += permissions.length;
      for (const permission of permissions) {
        const target = JSON.stringify(permission.FunctionName);
        assert.ok(!target.includes(`"${fn}"`), `a permission names the function: ${target}`);
        assert.ok(!target.includes(`"${version}"`), `a permission names the version: ${target}`);
        assert.ok(aliases.has(permission.FunctionName.Ref), `a permission on something else than an alias: ${target}`);
      }
    }
    // API Gateway's two, and the outsider's on the token and admin aliases (the config principals, of this
    // account, hold identity policies instead).
    assert.equal(count, 4, `found ${count} permissions`);
  });
});
