import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { App, Stack, Validations } from 'aws-cdk-lib';
import { Annotations, Match } from 'aws-cdk-lib/assertions';
import * as iam from 'aws-cdk-lib/aws-iam';
import { AwsSolutionsChecks } from 'cdk-nag';
import type { IConstruct } from 'constructs';
import { account, bwell, entraClient, epicClient, kmsKeys, shipped, synth } from './support.js';

const variants: Record<string, unknown> = {
  'the shipped configuration': shipped,
  'other accounts': { ...shipped, allowedAccounts: [account, '222222222222'] },
  'an organization': { ...shipped, allowedOrgId: 'o-a1b2c3d4e5' },
  'a private API': { ...shipped, vpcEndpointIds: ['vpce-0123456789abcdef0'] },
  'an alarm topic': { ...shipped, alarmTopicArn: `arn:aws:sns:us-east-1:${account}:token-broker-alarms` },
  'principals, admins and a customer key': {
    clients: {
      bwell: {
        ...bwell,
        allowedPrincipals: [`arn:aws:iam::${account}:role/app`],
        adminPrincipals: [`arn:aws:iam::${account}:role/ops`],
        secretKmsKeyArn: kmsKeys.secret,
      },
      'bwell-write': { ...bwell, secretName: `arn:aws:secretsmanager:us-east-1:${account}:secret:bwell/write-AbCdEf` },
    },
  },
  'admins of every client': { ...shipped, adminPrincipals: [`arn:aws:iam::${account}:role/platform-oncall`] },
  'a secretless client': {
    clients: {
      bwell,
      entra: entraClient,
    },
  },
  'a hosted JWKS': {
    clients: {
      bwell,
      epic: epicClient,
    },
  },
};

/** Runs `fn` with the validation report CDK prints to the console muted (the test reads the file instead). */
function quietly<T>(fn: () => T): T {
  const { error, log, warn } = console;
  const write = process.stderr.write;
  console.error = console.log = console.warn = () => {};
  process.stderr.write = () => true;
  try {
    return fn();
  } finally {
    Object.assign(console, { error, log, warn });
    process.stderr.write = write;
  }
}

/** Every acknowledgement in the tree: rule id → reason. */
function acknowledgements(root: IConstruct): Map<string, string> {
  const found = new Map<string, string>();
  for (const construct of root.node.findAll()) {
    for (const entry of construct.node.metadata) {
      if (entry.type !== Validations.ACKNOWLEDGED_RULES_METADATA_KEY) continue;
      for (const [id, reason] of Object.entries(entry.data as Record<string, string>)) {
        found.set(id.replace(/^annotation::/i, ''), reason);
      }
    }
  }
  return found;
}

describe('cdk-nag AwsSolutions', () => {
  for (const [name, tokenBroker] of Object.entries(variants)) {
    it(`reports nothing for ${name}`, () => {
      const { app, stack } = synth(tokenBroker);
      const report = new AwsSolutionsChecks(app).validateScope(app);
      assert.deepEqual(
        report.violations.map((v) => `${v.ruleName} ${v.violatingResources.map((r) => r.constructPath).join(', ')}`),
        [],
      );
      assert.equal(report.success, true);
      const errors = Annotations.fromStack(stack).findError('*', Match.anyValue());
      assert.deepEqual(errors, []);
      const warnings = Annotations.fromStack(stack).findWarning('*', Match.anyValue());
      assert.deepEqual(warnings, []);
    });
  }

  it('acknowledges exactly these rules, each with a written reason', () => {
    const { app } = synth(shipped);
    const acknowledged = acknowledgements(app);
    assert.deepEqual(
      [...acknowledged.keys()].sort(),
      [
        'AwsSolutions-APIG3',
        'AwsSolutions-COG4',
        'AwsSolutions-DDB3',
        'AwsSolutions-IAM5[Resource::*]',
        'AwsSolutions-L1',
        'AwsSolutions-S1',
        'AwsSolutions-SMG4',
      ].sort(),
    );
    for (const [id, reason] of acknowledged) {
      assert.ok(reason.trim().length >= 60, `${id} needs a real reason, got "${reason}"`);
    }
  });

  it('would report a violation: the checks are not vacuous', () => {
    const app = new App();
    const stack = new Stack(app, 'Careless');
    new iam.Role(stack, 'Admin', {
      assumedBy: new iam.AccountRootPrincipal(),
      inlinePolicies: {
        all: new iam.PolicyDocument({ statements: [new iam.PolicyStatement({ actions: ['*'], resources: ['*'] })] }),
      },
    });
    const report = new AwsSolutionsChecks(app).validateScope(app);
    assert.equal(report.success, false);
    assert.ok(report.violations.some((v) => v.ruleName.startsWith('AwsSolutions-IAM5')));
  });

  it('fails the synth when registered as a validation plugin and a rule is broken', () => {
    const outdir = mkdtempSync(join(tmpdir(), 'token-broker-nag-'));
    const app = new App({ outdir });
    const stack = new Stack(app, 'Careless');
    new iam.Role(stack, 'Admin', {
      assumedBy: new iam.AccountRootPrincipal(),
      inlinePolicies: {
        all: new iam.PolicyDocument({ statements: [new iam.PolicyStatement({ actions: ['*'], resources: ['*'] })] }),
      },
    });
    Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
    try {
      assert.throws(() => quietly(() => app.synth()), /Validation failed/);
      const report = readFileSync(join(outdir, 'validation-report.json'), 'utf8');
      assert.match(report, /AwsSolutions-IAM5\[Action::\*\]/);
    } finally {
      rmSync(outdir, { recursive: true, force: true });
    }
  });

  it('passes the synth when registered as a validation plugin on the broker app', () => {
    const { app } = synth(variants['principals, admins and a customer key']);
    Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
    assert.doesNotThrow(() => app.synth());
  });
});
