import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Annotations, Match, type Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { clientStackCount } from '../../lib/token-broker.js';
import { account, allTemplates, apiPolicy, list, outsiderAccount, synth, teamRegistry } from './support.js';

/*
 * Issue 11: a registry a platform team runs centrally. 200 clients, each with two fetching roles and one admin of
 * the deploying account, synthesize into one deployment within CloudFormation's and API Gateway's quotas.
 */

const clientCount = 200;

/** The API resource policy as API Gateway stores it: every execute-api resource expanded to a full ARN. */
function storedPolicyLength(template: Template): number {
  const policy = { Version: '2012-10-17', Statement: apiPolicy(template) };
  return JSON.stringify(policy).replaceAll(
    'execute-api:/',
    'arn:aws-us-gov:execute-api:ap-southeast-5:123456789012:abcdefghij/',
  ).length;
}

function countsOf(template: Template) {
  const json = template.toJSON() as { Resources?: object; Outputs?: object };
  return {
    resources: Object.keys(json.Resources ?? {}).length,
    outputs: Object.keys(json.Outputs ?? {}).length,
  };
}

describe(`${clientCount} clients in one deployment`, () => {
  it('synthesizes within the quotas: < 500 resources and ≤ 200 outputs per template, API policy ≤ 8,192, nag clean', () => {
    const started = performance.now();
    const { app, stack, broker, template } = synth({ clients: teamRegistry(clientCount) });
    const templates = allTemplates(template, broker);
    assert.ok(broker.clientStacks.length <= clientStackCount);
    assert.ok(broker.clientStacks.length >= clientStackCount - 1, `${broker.clientStacks.length} nested stacks`);
    let aliases = 0;
    for (const each of templates) {
      const { resources, outputs } = countsOf(each);
      assert.ok(resources < 500, `${resources} resources in one template`);
      assert.ok(outputs <= 200, `${outputs} outputs in one template`);
      aliases += Object.keys(each.findResources('AWS::Lambda::Alias')).length;
    }
    assert.equal(aliases, 2 * clientCount + 1, 'two per client and the API Gateway alias');
    // Every principal is of the deploying account: identity policies, and no Allow in the API's policy.
    assert.deepEqual(
      apiPolicy(template).map((s) => s.Effect),
      ['Deny'],
    );
    assert.ok(storedPolicyLength(template) <= 8192);

    const report = new AwsSolutionsChecks(app).validateScope(app);
    assert.deepEqual(
      report.violations.map((v) => `${v.ruleName} ${v.violatingResources.map((r) => r.constructPath).join(', ')}`),
      [],
    );
    assert.deepEqual(Annotations.fromStack(stack).findError('*', Match.anyValue()), []);
    assert.deepEqual(Annotations.fromStack(stack).findWarning('*', Match.anyValue()), []);
    console.log(`# ${clientCount} clients: synth, checks and nag in ${Math.round(performance.now() - started)} ms`);
  });

  it('with some principals of another account: those, and only those, in the resource policies, still within 8,192', () => {
    const { broker, template } = synth({
      allowedAccounts: [account, outsiderAccount],
      clients: teamRegistry(clientCount, 20),
    });
    const allowed = apiPolicy(template)
      .filter((s) => s.Effect === 'Allow')
      .flatMap((s) => list((s.Principal as { AWS: string | string[] }).AWS));
    const partners = Array.from(
      { length: clientCount / 20 },
      (_, i) => `arn:aws:iam::${outsiderAccount}:role/team-${String(i * 20).padStart(3, '0')}-partner`,
    );
    assert.deepEqual([...new Set(allowed)].sort(), partners);
    assert.ok(storedPolicyLength(template) <= 8192, `${storedPolicyLength(template)} characters`);
    const permissionPrincipals = allTemplates(template, broker)
      .flatMap((each) => Object.values(each.findResources('AWS::Lambda::Permission')))
      .map((p) => p.Properties.Principal)
      .filter((principal) => principal !== 'apigateway.amazonaws.com');
    assert.deepEqual(permissionPrincipals.sort(), partners);
  });
});
