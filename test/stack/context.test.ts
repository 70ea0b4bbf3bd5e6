import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseClientRegistry } from '../../lambdas/core/config.js';
import { parseTokenBrokerContext } from '../../lib/context.js';
import { bwell, cdkJson, kmsKeys, problemsOf, shipped } from './support.js';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));

describe('the tokenBroker context', () => {
  it('accepts what cdk.json ships, and the optional settings', () => {
    assert.deepEqual(Object.keys(parseTokenBrokerContext(shipped).clients), ['bwell']);
    const full = parseTokenBrokerContext({
      ...shipped,
      allowedAccounts: ['111111111111', '222222222222'],
      allowedOrgId: 'o-a1b2c3d4e5',
      vpcEndpointIds: ['vpce-0123456789abcdef0'],
      refreshWindowSeconds: 90,
      alarmTopicArn: 'arn:aws:sns:us-east-1:111111111111:token-broker-alarms',
      adminPrincipals: ['arn:aws:iam::111111111111:role/platform-oncall'],
    });
    assert.deepEqual(full.adminPrincipals, ['arn:aws:iam::111111111111:role/platform-oncall']);
    assert.equal(full.alarmTopicArn, 'arn:aws:sns:us-east-1:111111111111:token-broker-alarms');
    assert.deepEqual(full.allowedAccounts, ['111111111111', '222222222222']);
    assert.equal(full.allowedOrgId, 'o-a1b2c3d4e5');
    assert.deepEqual(full.vpcEndpointIds, ['vpce-0123456789abcdef0']);
    assert.equal(full.refreshWindowSeconds, 90);
  });

  it('accepts the context as a JSON string (cdk synth -c tokenBroker=...)', () => {
    assert.deepEqual(Object.keys(parseTokenBrokerContext(JSON.stringify(shipped)).clients), ['bwell']);
  });

  it('reports every problem at once, each named by its field', () => {
    const message = problemsOf({
      clients: { bwell: { ...bwell, secretName: 'has spaces' }, Bad_Name: bwell },
      allowedAccounts: ['111111111111', '12345'],
      allowedOrgId: 'org-1',
      vpcEndpointIds: ['vpc-123'],
      refreshWindowSeconds: -1,
      alarmTopicArn: 'arn:aws:sns:us-east-1:111111111111:*',
      adminPrincipals: ['arn:aws:iam::111111111111:role/*'],
      colour: 'blue',
    });
    assert.match(message, /tokenBroker\.adminPrincipals\[0\]: must be an IAM principal ARN/);
    assert.match(message, /tokenBroker\.alarmTopicArn: must be the ARN of a standard \(not FIFO\) SNS topic/);
    assert.match(message, /tokenBroker\.colour: unknown field/);
    assert.match(message, /tokenBroker\.allowedAccounts\[1\]: must be a 12-digit AWS account id/);
    assert.match(message, /tokenBroker\.allowedOrgId: must be an AWS Organizations id/);
    assert.match(message, /tokenBroker\.vpcEndpointIds\[0\]: must be a VPC endpoint id/);
    assert.match(message, /tokenBroker\.refreshWindowSeconds: must be a whole number of seconds from 1 to 2678400/);
    assert.match(message, /tokenBroker\.clients\.bwell\.secretName: must be a Secrets Manager secret name or ARN/);
    assert.match(message, /tokenBroker\.clients\.Bad_Name: client name must match/);
    assert.equal(message.split('\n')[0], 'invalid token broker configuration:');
  });

  it('rejects a missing context, empty lists and repeated entries', () => {
    assert.match(problemsOf(undefined), /tokenBroker: is required/);
    assert.match(problemsOf('{not json'), /tokenBroker: is not valid JSON/);
    assert.match(
      problemsOf({ ...shipped, allowedAccounts: [] }),
      /tokenBroker\.allowedAccounts: must be a non-empty array/,
    );
    assert.match(
      problemsOf({ ...shipped, vpcEndpointIds: ['vpce-0123456789abcdef0', 'vpce-0123456789abcdef0'] }),
      /tokenBroker\.vpcEndpointIds: must not repeat an entry/,
    );
    assert.match(problemsOf({}), /tokenBroker\.clients: is required/);
    assert.match(problemsOf({ clients: [] }), /tokenBroker\.clients: must be an object keyed by client name/);
  });
});

describe('per-client deployment fields', () => {
  const key = kmsKeys.secret;

  it('carries allowedPrincipals and secretKmsKeyArn into the parsed registry', () => {
    const principals = [
      'arn:aws:iam::111111111111:root',
      'arn:aws:iam::111111111111:role/team/app',
      'arn:aws:iam::222222222222:user/ci',
    ];
    const registry = parseClientRegistry({ bwell: { ...bwell, allowedPrincipals: principals, secretKmsKeyArn: key } });
    assert.deepEqual(registry.bwell?.allowedPrincipals, principals);
    assert.equal(registry.bwell?.secretKmsKeyArn, key);
    assert.equal(parseClientRegistry({ bwell }).bwell?.allowedPrincipals, undefined);
  });

  it('rejects principals that are not role, user or account-root ARNs, naming client and field', () => {
    const message = problemsOf({
      clients: {
        bwell: {
          ...bwell,
          allowedPrincipals: [
            'arn:aws:iam::111111111111:role/*',
            '111111111111',
            'arn:aws:sts::111111111111:assumed-role/app/session',
            'arn:aws:iam::111111111111:role/app',
            'arn:aws:iam::111111111111:role/app',
          ],
        },
        other: { ...bwell, allowedPrincipals: 'arn:aws:iam::111111111111:role/app' },
      },
    });
    for (const index of [0, 1, 2]) {
      assert.match(
        message,
        new RegExp(`tokenBroker\\.clients\\.bwell\\.allowedPrincipals\\[${index}\\]: must be an IAM principal ARN`),
      );
    }
    assert.doesNotMatch(message, /allowedPrincipals\[3\]/);
    assert.match(message, /tokenBroker\.clients\.bwell\.allowedPrincipals: must not repeat a principal/);
    assert.match(message, /tokenBroker\.clients\.other\.allowedPrincipals: must be a non-empty array/);
  });

  it('carries adminPrincipals into the parsed registry, apart from allowedPrincipals', () => {
    const admins = ['arn:aws:iam::111111111111:role/ops', 'arn:aws:iam::222222222222:root'];
    const registry = parseClientRegistry({ bwell: { ...bwell, adminPrincipals: admins } });
    assert.deepEqual(registry.bwell?.adminPrincipals, admins);
    assert.equal(registry.bwell?.allowedPrincipals, undefined);
    assert.equal(parseClientRegistry({ bwell }).bwell?.adminPrincipals, undefined);
  });

  it('rejects adminPrincipals exactly like allowedPrincipals, naming client and field', () => {
    const message = problemsOf({
      clients: {
        bwell: {
          ...bwell,
          adminPrincipals: [
            'arn:aws:iam::111111111111:role/*',
            '111111111111',
            'arn:aws:sts::111111111111:assumed-role/ops/session',
            'arn:aws:iam::111111111111:role/ops',
            'arn:aws:iam::111111111111:role/ops',
          ],
        },
        other: { ...bwell, adminPrincipals: 'arn:aws:iam::111111111111:role/ops' },
        empty: { ...bwell, adminPrincipals: [] },
      },
    });
    for (const index of [0, 1, 2]) {
      assert.match(
        message,
        new RegExp(`tokenBroker\\.clients\\.bwell\\.adminPrincipals\\[${index}\\]: must be an IAM principal ARN`),
      );
    }
    assert.doesNotMatch(message, /adminPrincipals\[3\]/);
    assert.match(message, /tokenBroker\.clients\.bwell\.adminPrincipals: must not repeat a principal/);
    assert.match(message, /tokenBroker\.clients\.other\.adminPrincipals: must be a non-empty array/);
    assert.match(message, /tokenBroker\.clients\.empty\.adminPrincipals: must be a non-empty array/);
    assert.doesNotMatch(message, /allowedPrincipals/, 'the field is named as written');
  });

  it('rejects a KMS alias or a malformed key ARN, naming client and field', () => {
    for (const bad of [
      'arn:aws:kms:us-east-1:111111111111:alias/secrets',
      'alias/secrets',
      key.replace('key/', 'key/x'),
    ]) {
      assert.match(
        problemsOf({ clients: { bwell: { ...bwell, secretKmsKeyArn: bad } } }),
        /tokenBroker\.clients\.bwell\.secretKmsKeyArn: must be a KMS key ARN/,
      );
    }
  });
});

describe('the CDK app (bin/token-broker.ts)', () => {
  function runApp(tokenBroker: unknown) {
    const outdir = mkdtempSync(join(tmpdir(), 'token-broker-app-'));
    try {
      const context = { ...cdkJson.context, tokenBroker, 'aws:cdk:bundling-stacks': [] };
      const result = spawnSync(process.execPath, ['--import', 'tsx', 'bin/token-broker.ts'], {
        cwd: repoRoot,
        env: { ...process.env, CDK_CONTEXT_JSON: JSON.stringify(context), CDK_OUTDIR: outdir },
        encoding: 'utf8',
        timeout: 120_000,
      });
      const template = join(outdir, 'TokenBroker.template.json');
      return { ...result, template: existsSync(template) ? JSON.parse(readFileSync(template, 'utf8')) : undefined };
    } finally {
      rmSync(outdir, { recursive: true, force: true });
    }
  }

  it('fails the synth on a bad registry with every problem named by client and field', () => {
    const result = runApp({
      clients: {
        bwell: { ...bwell, wellKnownUrl: 'http://idp.example/.well-known/openid-configuration', scopes: [] },
        acme: { ...bwell, allowedPrincipals: ['arn:aws:iam::*:role/x'] },
      },
    });
    assert.equal(result.status, 1, result.stderr);
    assert.match(result.stderr, /tokenBroker\.clients\.bwell\.wellKnownUrl: must be an https URL/);
    assert.match(result.stderr, /tokenBroker\.clients\.bwell\.scopes: must be a non-empty array/);
    assert.match(result.stderr, /tokenBroker\.clients\.acme\.allowedPrincipals\[0\]/);
    assert.equal(result.template, undefined);
  });

  it('reports a problem found while building the stack the same way: message only, exit 1', () => {
    const result = runApp({
      allowedAccounts: ['111111111111'],
      clients: { bwell: { ...bwell, adminPrincipals: ['arn:aws:iam::999999999999:role/ops'] } },
    });
    assert.equal(result.status, 1, result.stderr);
    assert.match(
      result.stderr,
      /tokenBroker\.clients\.bwell\.adminPrincipals\[0\]: account 999999999999 is not admitted by tokenBroker\.allowedAccounts/,
    );
    assert.doesNotMatch(result.stderr, /\n\s+at /, 'no stack trace');
    assert.equal(result.template, undefined);
  });

  it('synthesizes the shipped configuration with cdk-nag registered, offline', () => {
    const result = runApp(shipped);
    assert.equal(result.status, 0, result.stderr);
    assert.ok(result.template, 'template written');
    const types = Object.values(result.template.Resources as Record<string, { Type: string }>).map((r) => r.Type);
    for (const type of [
      'AWS::DynamoDB::Table',
      'AWS::Lambda::Function',
      'AWS::ApiGateway::RestApi',
      'AWS::Lambda::Alias',
      'AWS::CloudWatch::Alarm',
      'AWS::CloudWatch::Dashboard',
    ]) {
      assert.ok(types.includes(type), type);
    }
    assert.match(
      readFileSync(join(repoRoot, 'bin/token-broker.ts'), 'utf8'),
      /addPlugins\(new AwsSolutionsChecks\(app\)\)/,
    );
  });
});
