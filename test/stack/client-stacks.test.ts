import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { App, CfnOutput, Stack } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import * as iam from 'aws-cdk-lib/aws-iam';
import { ConfigError } from '../../lambdas/core/config.js';
import { parseTokenBrokerContext } from '../../lib/context.js';
import { clientStackCount, clientStackIndexOf } from '../../lib/token-broker.js';
import { TokenBrokerStack } from '../../lib/token-broker-stack.js';
import {
  account,
  allTemplates,
  apiPolicy,
  bwell,
  cdkJson,
  clientTemplate,
  invokePermissions,
  list,
  synth,
} from './support.js';

/** A client shaped like bwell, with its own secret. */
const client = (name: string, extra: object = {}) => ({ ...bwell, secretName: `token-broker/${name}`, ...extra });
const registryOf = (names: string[]) => Object.fromEntries(names.map((name) => [name, client(name)]));

/** The first `count` names `team-<n>` whose clients land in nested stack `index`. */
function namesIn(index: number, count: number): string[] {
  const names: string[] = [];
  for (let n = 0; names.length < count; n++) {
    if (clientStackIndexOf(`team-${n}`) === index) names.push(`team-${n}`);
  }
  return names;
}

function agnosticSynth(tokenBroker: unknown) {
  const app = new App({ context: { ...cdkJson.context, 'aws:cdk:bundling-stacks': [] } });
  const stack = new TokenBrokerStack(app, 'Agnostic', { config: parseTokenBrokerContext(tokenBroker) });
  return { stack, broker: stack.broker, template: Template.fromStack(stack) };
}

describe('per-client nested stacks', () => {
  it("puts a client's aliases in the nested stack its name hashes to", () => {
    const names = Array.from({ length: 40 }, (_, n) => `team-${n}`);
    const { broker } = synth({ clients: registryOf(names) });
    for (const name of names) {
      const nested = Stack.of(broker.aliasFor(name));
      assert.equal(nested.nested, true);
      assert.equal(nested.node.id, `Clients${String(clientStackIndexOf(name)).padStart(2, '0')}`);
      assert.equal(Stack.of(broker.adminAliasFor(name)), nested);
    }
    assert.ok(names.every((name) => clientStackIndexOf(name) < clientStackCount));
  });

  it('moves no client when others are added or removed: same nested stack, same logical id', () => {
    const before = Array.from({ length: 30 }, (_, n) => `team-${n}`);
    const after = [...before.slice(5), ...Array.from({ length: 20 }, (_, n) => `new-${n}`)];
    const placed = (names: string[]) => {
      const { broker } = synth({ clients: registryOf(names) });
      return new Map(
        names.map((name) => {
          const alias = broker.aliasFor(name);
          const nested = Stack.of(alias);
          return [name, `${nested.node.id} ${nested.getLogicalId(alias.node.defaultChild as never)}`];
        }),
      );
    };
    const first = placed(before);
    const second = placed(after);
    for (const name of before.slice(5)) assert.equal(second.get(name), first.get(name), name);
  });

  it('fails the synth naming the nested stack when it would exceed 500 resources', () => {
    const { stack, broker } = synth({ allowedAccounts: [account, '222222222222'], clients: registryOf(['bwell']) });
    for (let i = 0; i < 500; i++) {
      broker.grantInvokeForClient(new iam.ArnPrincipal(`arn:aws:iam::222222222222:role/caller-${i}`), 'bwell');
    }
    assert.throws(
      () => Template.fromStack(stack),
      /nested stack TokenBroker\/TokenBroker\/Clients\d\d \(.*\) would have 50\d resources, over CloudFormation's limit of 500/,
    );
  });

  it('fails the synth naming the stack when it would exceed 200 outputs', () => {
    const { stack } = synth({ clients: registryOf(['bwell']) });
    for (let i = 0; i < 200; i++) new CfnOutput(stack, `Extra${i}`, { value: `${i}` });
    assert.throws(
      () => Template.fromStack(stack),
      /stack TokenBroker would have 20\d outputs, over CloudFormation's limit of 200/,
    );
  });
});

describe('config principals of the deploying account: identity policies', () => {
  const shared = `arn:aws:iam::${account}:role/shared`;

  it('import a principal once per nested stack, so that its grants there merge into one policy', () => {
    const [a, b] = namesIn(3, 2) as [string, string];
    const [c] = namesIn(7, 1) as [string];
    const { template, broker } = synth({
      clients: {
        [a]: client(a, { allowedPrincipals: [shared] }),
        [b]: client(b, { adminPrincipals: [shared] }),
        [c]: client(c, { allowedPrincipals: [shared] }),
      },
    });
    const policiesOfShared = (nested: Template) =>
      Object.values(nested.findResources('AWS::IAM::Policy')).filter((p) =>
        list(p.Properties.Roles).includes('shared'),
      );
    const inThree = policiesOfShared(clientTemplate(broker, a));
    assert.equal(inThree.length, 1);
    const statements = (inThree[0]?.Properties.PolicyDocument.Statement ?? []) as {
      Action: string;
      Resource: unknown;
    }[];
    const grants = statements.flatMap((statement) =>
      list(statement.Resource as string | string[]).map(() => statement.Action),
    );
    // Fetch and invoke on one client, the DELETE route and admin alias of the other (the minimizer may merge them).
    assert.deepEqual(grants.sort(), [
      'execute-api:Invoke',
      'execute-api:Invoke',
      'lambda:InvokeFunction',
      'lambda:InvokeFunction',
    ]);
    assert.equal(policiesOfShared(clientTemplate(broker, c)).length, 1);
    assert.equal(
      Object.keys(template.findResources('AWS::IAM::Policy')).length,
      2,
      "only the function role's and the invoke trail's log delivery role's",
    );
  });

  it('name each policy after the stack, so that two deployments granting one role keep their own', () => {
    const { broker } = synth({ clients: { bwell: client('bwell', { allowedPrincipals: [shared] }) } });
    const names = Object.values(clientTemplate(broker, 'bwell').findResources('AWS::IAM::Policy')).map(
      (p) => p.Properties.PolicyName as string,
    );
    assert.equal(names.length, 1);
    assert.match(names[0] ?? '', /^TokenBroker-\d+-Grantee-[0-9a-f]{16}$/);
  });
});

describe('a stack without an account (env-agnostic)', () => {
  const principals = [`arn:aws:iam::${account}:role/app`];
  const admins = ['arn:aws:iam::222222222222:role/ops'];

  it('grants config principals through the resource policies, and warns naming client and field', () => {
    const { stack, broker, template } = agnosticSynth({
      allowedOrgId: 'o-a1b2c3d4e5',
      clients: { bwell: client('bwell', { allowedPrincipals: principals, adminPrincipals: admins }) },
    });
    const warnings = Annotations.fromStack(stack)
      .findWarning('*', Match.stringLikeRegexp('cannot be checked'))
      .map((w) => String(w.entry.data));
    assert.equal(warnings.length, 2, warnings.join('\n'));
    assert.match(
      warnings[0] ?? '',
      /^tokenBroker\.clients\.bwell\.allowedPrincipals\[0\]: .*arn:aws:iam::111111111111:role\/app/,
    );
    assert.match(warnings[1] ?? '', /^tokenBroker\.clients\.bwell\.adminPrincipals\[0\]: /);
    const allowed = apiPolicy(template)
      .filter((s) => s.Effect === 'Allow')
      .flatMap((s) => list((s.Principal as { AWS: string | string[] }).AWS));
    assert.deepEqual(allowed.sort(), [...admins, ...principals].sort());
    assert.equal(invokePermissions(allTemplates(template, broker)).length, 2);
  });

  it('warns about nothing when no principal is configured', () => {
    const { stack } = agnosticSynth({ clients: { bwell } });
    assert.deepEqual(Annotations.fromStack(stack).findWarning('*', Match.anyValue()), []);
  });
});

describe('client secrets: what synth can see', () => {
  const fails = (clients: object, pattern: RegExp) =>
    assert.throws(
      () => synth({ clients }),
      (error: unknown) => error instanceof ConfigError && pattern.test(error.message),
    );

  it('refuses a secret ARN without its six-character suffix, saying why and what to use', () => {
    fails(
      {
        bwell: client('bwell', { secretName: `arn:aws:secretsmanager:us-east-1:${account}:secret:token-broker/bwell` }),
      },
      /tokenBroker\.clients\.bwell\.secretName: .*lacks the six-character suffix.*IAM would compare the ARN as written.*full ARN, or its name/,
    );
    assert.doesNotThrow(() =>
      synth({
        clients: {
          bwell: client('bwell', {
            secretName: `arn:aws:secretsmanager:us-east-1:${account}:secret:token-broker/bwell-AbCdEf`,
          }),
        },
      }),
    );
  });

  it('refuses two clients on one secret by name, naming both', () => {
    fails(
      { bwell: client('bwell'), other: client('other', { secretName: 'token-broker/bwell' }) },
      /tokenBroker\.clients\.other\.secretName: the same secret as tokenBroker\.clients\.bwell\.secretName/,
    );
  });

  it('refuses a name and an ARN of the same secret, in the stack account and region', () => {
    const arn = `arn:aws:secretsmanager:us-east-1:${account}:secret:token-broker/bwell-AbCdEf`;
    fails(
      { bwell: client('bwell'), other: client('other', { secretName: arn }) },
      /tokenBroker\.clients\.other\.secretName: the same secret as tokenBroker\.clients\.bwell\.secretName/,
    );
    const elsewhere = 'arn:aws:secretsmanager:eu-west-1:111111111111:secret:token-broker/bwell-AbCdEf';
    assert.doesNotThrow(() =>
      synth({ clients: { bwell: client('bwell'), other: client('other', { secretName: elsewhere }) } }),
    );
  });

  it('compares names with ARNs only when the stack has an account and region', () => {
    const arn = `arn:aws:secretsmanager:us-east-1:${account}:secret:token-broker/bwell-AbCdEf`;
    assert.doesNotThrow(() =>
      agnosticSynth({ clients: { bwell: client('bwell'), other: client('other', { secretName: arn }) } }),
    );
    assert.throws(
      () =>
        agnosticSynth({
          clients: { bwell: client('bwell'), other: client('other', { secretName: 'token-broker/bwell' }) },
        }),
      /the same secret as tokenBroker\.clients\.bwell\.secretName/,
    );
  });
});

describe("IAM's inline-policy limits of a config principal of the deploying account", () => {
  const platform = `arn:aws:iam::${account}:role/platform-oncall`;
  const teams = (count: number, extra: (name: string) => object) =>
    Object.fromEntries(
      Array.from({ length: count }, (_, i) => `team-${i}`).map((name) => [name, client(name, extra(name))]),
    );

  it('fails the synth when one role would administer more clients than its inline policies can name', () => {
    assert.throws(
      () => synth({ clients: teams(200, () => ({ adminPrincipals: [platform] })) }),
      (error: unknown) =>
        error instanceof ConfigError &&
        error.message.includes(`${platform}: its grants on 200 clients would take up to`) &&
        /over IAM's limit of 10240 per role, and the deploy would fail/.test(error.message),
    );
  });

  it('lets one role fetch and administer as many clients as fit, and counts a user against its own limit', () => {
    const { template } = synth({ clients: teams(20, () => ({ adminPrincipals: [platform] })) });
    assert.ok(template, 'twenty clients fit a role');
    const user = `arn:aws:iam::${account}:user/ci`;
    assert.throws(
      () => synth({ clients: teams(20, () => ({ allowedPrincipals: [user] })) }),
      /arn:aws:iam::111111111111:user\/ci: its grants on 20 clients .* over IAM's limit of 2048 per user/,
    );
  });

  it('counts nothing for principals of other accounts, which resource policies name instead', () => {
    // Twenty clients would be over a user's 2,048 characters if they were counted.
    const partner = 'arn:aws:iam::222222222222:user/partner';
    const { template } = synth({
      allowedAccounts: [account, '222222222222'],
      clients: teams(20, () => ({ allowedPrincipals: [partner] })),
    });
    assert.ok(template, 'twenty clients of a user of another account synthesize');
  });
});

describe('tokenBroker.adminPrincipals: the admins of every client', () => {
  const platform = `arn:aws:iam::${account}:role/platform-oncall`;
  const teams = (count: number) =>
    Object.fromEntries(Array.from({ length: count }, (_, i) => `team-${i}`).map((name) => [name, client(name)]));

  it('gets one identity policy: every DELETE route and every admin alias by wildcard, nothing else', () => {
    const { template } = synth({ clients: teams(3), adminPrincipals: [platform] });
    const policies = Object.values(template.findResources('AWS::IAM::Policy')).filter((p) =>
      list(p.Properties.Roles).includes('platform-oncall'),
    );
    assert.equal(policies.length, 1);
    const rendered = JSON.stringify(policies[0]?.Properties.PolicyDocument);
    const statements = policies[0]?.Properties.PolicyDocument.Statement as { Action: string; Resource: unknown }[];
    assert.deepEqual(statements.map((statement) => statement.Action).sort(), [
      'execute-api:Invoke',
      'lambda:InvokeFunction',
    ]);
    assert.match(rendered, /"\/v1\/DELETE\/clients\/\*\/token"/);
    assert.match(rendered, /":\*_admin"/);
    assert.doesNotMatch(rendered, /POST|team-\d/, 'no token route and no client named');
    assert.equal(apiPolicy(template).filter((statement) => statement.Effect === 'Allow').length, 0);
  });

  it('keeps its policy the same size for 3 or 200 clients, where listing it under each client would not fit', () => {
    const policyOf = (count: number) => {
      const { template } = synth({ clients: teams(count), adminPrincipals: [platform] });
      const policies = Object.values(template.findResources('AWS::IAM::Policy')).filter((p) =>
        list(p.Properties.Roles).includes('platform-oncall'),
      );
      return JSON.stringify(policies.map((p) => p.Properties.PolicyDocument));
    };
    const few = policyOf(3);
    assert.equal(policyOf(200), few);
    assert.ok(few.length < 1_000, `${few.length} characters`);
  });

  it('refuses a principal of another account or an account root, naming the index', () => {
    assert.throws(
      () =>
        synth({
          allowedAccounts: [account, '222222222222'],
          clients: teams(1),
          adminPrincipals: [platform, 'arn:aws:iam::222222222222:role/ops', `arn:aws:iam::${account}:root`],
        }),
      (error: unknown) =>
        error instanceof ConfigError &&
        /tokenBroker\.adminPrincipals\[1\]: must be a role or user of the deploying account/.test(error.message) &&
        /tokenBroker\.adminPrincipals\[2\]: must be a role or user/.test(error.message) &&
        !error.message.includes('adminPrincipals[0]'),
    );
  });

  it('refuses to guess in a stack without an account', () => {
    assert.throws(
      () => agnosticSynth({ clients: teams(1), adminPrincipals: [platform] }),
      /tokenBroker\.adminPrincipals\[0\]: the stack has no account/,
    );
  });
});
