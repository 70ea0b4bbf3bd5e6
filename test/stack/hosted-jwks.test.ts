import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Match } from 'aws-cdk-lib/assertions';
import { environmentVariables } from '../../lambdas/entry/environment.js';
import { bwell, epicClient, kmsKeys, list, type Statement, synth } from './support.js';

const oracle = {
  wellKnownUrl: 'https://fhir.oracle.example/.well-known/smart-configuration',
  secretName: 'token-broker/oracle',
  scopes: ['system/Patient.read'],
  authMethod: 'private_key_jwt',
  jwks: [{ kty: 'RSA', kid: 'oracle-2026', n: 'sXch', e: 'AQAB' }],
};

const published = () => synth({ clients: { bwell, epic: epicClient, oracle } });

/** The logical id of the JWKS function: the one whose environment names no token table. */
function jwksFunction(template: ReturnType<typeof published>['template']) {
  const functions = Object.entries(template.findResources('AWS::Lambda::Function')).filter(
    ([, fn]) => fn.Properties.Environment?.Variables?.[environmentVariables.tableName] === undefined,
  );
  assert.equal(functions.length, 1, 'one function without the table');
  return functions[0] as [string, { Properties: Record<string, unknown> & { Role: { 'Fn::GetAtt': string[] } } }];
}

describe('the hosted JWKS', () => {
  it('is not deployed when no client has public keys to publish', () => {
    const { template, broker } = synth({ clients: { bwell } });
    template.resourceCountIs('AWS::Lambda::Url', 0);
    assert.equal(broker.hostedJwks, undefined);
    assert.throws(() => broker.jwksUrlFor('bwell'), /client bwell publishes no JWKS/);
  });

  it('is an anonymous function URL, invocable through that URL only', () => {
    const { template } = published();
    const [id] = jwksFunction(template);
    template.hasResourceProperties('AWS::Lambda::Url', {
      AuthType: 'NONE',
      TargetFunctionArn: { 'Fn::GetAtt': [id, 'Arn'] },
    });
    // Since October 2025 a function URL needs both permissions; the second holds only through the URL.
    template.hasResourceProperties('AWS::Lambda::Permission', {
      Action: 'lambda:InvokeFunctionUrl',
      FunctionName: { 'Fn::GetAtt': [id, 'Arn'] },
      Principal: '*',
      FunctionUrlAuthType: 'NONE',
    });
    template.hasResourceProperties('AWS::Lambda::Permission', {
      Action: 'lambda:InvokeFunction',
      FunctionName: { 'Fn::GetAtt': [id, 'Arn'] },
      Principal: '*',
      InvokedViaFunctionUrl: true,
    });
    template.hasOutput('JwksBaseUrl', {
      Value: { 'Fn::GetAtt': [Match.stringLikeRegexp('^TokenBrokerHostedJwksFunctionFunctionUrl'), 'FunctionUrl'] },
    });
  });

  it('reads the bundled registry and nothing else: no table, no sealing key, no client secret', () => {
    const { template } = published();
    const [, fn] = jwksFunction(template);
    assert.deepEqual(Object.keys((fn.Properties.Environment as { Variables: object }).Variables).sort(), [
      'POWERTOOLS_SERVICE_NAME',
      environmentVariables.clientsFile,
    ]);
    assert.equal(fn.Properties.Runtime, 'nodejs22.x');
  });

  it('its role may read the public half of every published KMS key and write its logs, nothing more', () => {
    const { template, stack } = published();
    const [, fn] = jwksFunction(template);
    const roleId = fn.Properties.Role['Fn::GetAtt'][0] as string;
    const statements = Object.values(template.findResources('AWS::IAM::Policy'))
      .filter((p) => JSON.stringify(p.Properties.Roles).includes(`"${roleId}"`))
      .flatMap((p) => stack.resolve(p.Properties.PolicyDocument.Statement) as Statement[]);
    const lines = statements.flatMap((s) =>
      list(s.Action).flatMap((action) =>
        (Array.isArray(s.Resource) ? s.Resource : [s.Resource]).map((r) => `${action} ${JSON.stringify(r)}`),
      ),
    );
    assert.deepEqual(lines.slice(0, 2), [
      `kms:GetPublicKey "${kmsKeys.signing}"`,
      `kms:GetPublicKey "${kmsKeys.published}"`,
    ]);
    assert.deepEqual(
      lines.slice(2).map((line) => line.split(' ')[0]),
      ['logs:CreateLogStream', 'logs:PutLogEvents'],
    );
  });

  it('the broker function may sign with the current key only, not with a key that is only published', () => {
    const { template } = published();
    const policies = JSON.stringify(template.findResources('AWS::IAM::Policy'));
    const signing = Object.values(template.findResources('AWS::IAM::Policy')).flatMap(
      (p) => p.Properties.PolicyDocument.Statement as Statement[],
    );
    const sign = signing.filter((s) => list(s.Action).includes('kms:Sign'));
    assert.deepEqual(
      sign.map((s) => s.Resource),
      [kmsKeys.signing],
    );
    assert.ok(policies.includes(kmsKeys.published), 'the next key is granted somewhere (the JWKS role)');
  });

  it('names each client URL below the function URL', () => {
    const { broker, stack } = published();
    const url = stack.resolve(broker.jwksUrlFor('epic'));
    assert.match(JSON.stringify(url), /clients\/epic\/jwks\.json/);
    assert.throws(() => broker.jwksUrlFor('bwell'), /publishes no JWKS/);
  });
});
