/**
 * Issue 16, items 7 and 8: `cdk synth`, the `TokenBroker` construct, `npm start` and TOKEN_BROKER_CLIENTS check
 * the registry and the settings with one parser and give the same answer; ARNs of another partition than the
 * stack's are refused.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { ConfigError } from '../../lambdas/core/config.js';
import { createBrokerFromEnvironment } from '../../lambdas/entry/compose.js';
import { environmentVariables } from '../../lambdas/entry/environment.js';
import { localDeployment } from '../../lambdas/local/embedded-clients.js';
import { parseTokenBrokerContext } from '../../lib/context.js';
import { TokenBroker, type TokenBrokerProps } from '../../lib/token-broker.js';
import { problemsThrownBy } from '../support/config-problems.js';
import { runScript } from '../support/dev-server-process.js';
import { RecordingLogger } from '../support/fakes.js';
import { account, bwell, cdkJson, env, shipped } from './support.js';

const scratch = mkdtempSync(join(tmpdir(), 'token-broker-one-parser-'));
after(() => rmSync(scratch, { recursive: true, force: true }));
let files = 0;

/** A cdk.json like the shipped one, whose `tokenBroker` is the given text (so it may repeat keys). */
function cdkJsonWith(tokenBrokerText: string): { url: URL; text: string } {
  const { tokenBroker: _shipped, ...context } = cdkJson.context;
  const text = JSON.stringify({ ...cdkJson, context: { ...context, tokenBroker: '@' } }, null, 2).replace(
    '"@"',
    tokenBrokerText,
  );
  const path = join(scratch, `cdk-${files++}.json`);
  writeFileSync(path, text);
  return { url: pathToFileURL(path), text };
}

const problemsOf = problemsThrownBy;

/** The construct, used on its own as a platform team's app would. */
function construct(props: TokenBrokerProps, stackEnv: { account?: string; region?: string } = env): TokenBroker {
  const stack = new Stack(new App({ context: { 'aws:cdk:bundling-stacks': [] } }), 'Host', { env: stackEnv });
  return new TokenBroker(stack, 'Broker', props);
}

const sealing = 'arn:aws:secretsmanager:us-east-1:111111111111:secret:token-broker/sealing-key-AbCdEf';
/** The function's cold start with TOKEN_BROKER_CLIENTS and a runtime setting or two. */
function coldStart(variables: NodeJS.ProcessEnv): void {
  createBrokerFromEnvironment(
    { [environmentVariables.tableName]: 'tokens', [environmentVariables.sealingSecretArn]: sealing, ...variables },
    { logger: new RecordingLogger() },
  );
}

/** The same problems, named under TOKEN_BROKER_CLIENTS instead of cdk.json's path. */
const underVariable = (problems: readonly string[]) =>
  problems.map((problem) => problem.replaceAll('tokenBroker.clients.', 'TOKEN_BROKER_CLIENTS.'));

// Every registry problem the issue names, in one registry.
const badClients = {
  // A secret ARN without the suffix Secrets Manager appends: IAM would never match it.
  suffixless: { ...bwell, secretName: `arn:aws:secretsmanager:us-east-1:${account}:secret:token-broker/suffixless` },
  // Two clients on one secret.
  first: { ...bwell, secretName: 'token-broker/shared' },
  second: { ...bwell, secretName: 'token-broker/shared' },
  // Over 31 days.
  lasting: { ...bwell, secretName: 'token-broker/lasting', defaultExpiresIn: 31 * 24 * 3600 + 1 },
  // Missing fields.
  bare: { scopes: ['a'] },
};

describe('one parser, the same answer on every path (issue 16 item 8)', () => {
  it('refuses every bad registry value on all four paths with the same problems, all at once', () => {
    const viaContext = problemsOf(() => parseTokenBrokerContext({ clients: badClients }));
    const viaConstruct = problemsOf(() => construct({ clients: badClients as never }));
    const { url } = cdkJsonWith(JSON.stringify({ clients: badClients }));
    const viaLocalStart = problemsOf(() => localDeployment({}, url));
    const json = JSON.stringify(badClients);
    const viaVariableLocal = problemsOf(() => localDeployment({ [environmentVariables.clients]: json }, url));
    const viaVariableColdStart = problemsOf(() => coldStart({ [environmentVariables.clients]: json }));

    assert.deepEqual(viaConstruct, viaContext);
    assert.deepEqual(viaLocalStart, viaContext);
    assert.deepEqual(viaVariableLocal, underVariable(viaContext));
    assert.deepEqual(viaVariableColdStart, underVariable(viaContext));
    for (const expected of [
      /^tokenBroker\.clients\.suffixless\.secretName: the ARN .* lacks the six-character suffix/,
      /^tokenBroker\.clients\.second\.secretName: the same secret as tokenBroker\.clients\.first\.secretName/,
      /^tokenBroker\.clients\.lasting\.defaultExpiresIn: must be a whole number of seconds from 1 to 2678400/,
      /^tokenBroker\.clients\.bare\.wellKnownUrl: is required \(or tokenEndpoint, for a provider without metadata\)$/,
      /^tokenBroker\.clients\.bare\.secretName: is required$/,
    ]) {
      assert.ok(
        viaContext.some((problem) => expected.test(problem)),
        `${expected} in:\n${viaContext.join('\n')}`,
      );
    }
    assert.equal(viaContext.length, 5, viaContext.join('\n'));
  });

  it('errors from TOKEN_BROKER_CLIENTS name that variable, not cdk.json', () => {
    const json = JSON.stringify({ demo: { ...bwell, scopes: [] } });
    for (const run of [
      () => coldStart({ [environmentVariables.clients]: json }),
      () => localDeployment({ [environmentVariables.clients]: json }, cdkJsonWith(JSON.stringify(shipped)).url),
    ]) {
      assert.throws(run, (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        // The local server reads only the registry from it; the cold start reads all its variables.
        assert.match(error.message, /^invalid token broker configuration in (TOKEN_BROKER_CLIENTS|the environment):/);
        assert.match(error.message, /TOKEN_BROKER_CLIENTS\.demo\.scopes: must be a non-empty array/);
        assert.doesNotMatch(error.message, /tokenBroker\.|cdk\.json/);
        return true;
      });
    }
  });

  it('refuses refreshWindowSeconds of -1, 0, 1.5, 59.999, NaN, a string or over 31 days on every path', () => {
    const expected = 'must be a whole number of seconds from 1 to 2678400';
    for (const value of [-1, 0, 1.5, 59.999, Number.NaN, '60', 31 * 24 * 3600 + 1]) {
      const props = { clients: shipped.clients, refreshWindowSeconds: value as number };
      assert.deepEqual(
        problemsOf(() => construct(props)),
        [`tokenBroker.refreshWindowSeconds: ${expected}`],
        `${value}`,
      );
      assert.deepEqual(
        problemsOf(() => parseTokenBrokerContext({ ...shipped, refreshWindowSeconds: value })),
        [`tokenBroker.refreshWindowSeconds: ${expected}`],
      );
      // JSON has no NaN: cdk.json can only spell the others.
      if (!Number.isNaN(value)) {
        const { url } = cdkJsonWith(JSON.stringify({ ...shipped, refreshWindowSeconds: value }));
        assert.deepEqual(
          problemsOf(() => localDeployment({}, url)),
          [`tokenBroker.refreshWindowSeconds: ${expected}`],
        );
      }
      // An environment variable is text by nature: "60" is 60 there, and the rest are refused alike.
      if (typeof value === 'string') continue;
      const variable = environmentVariables.refreshWindowSeconds;
      assert.deepEqual(
        problemsOf(() =>
          coldStart({ [variable]: String(value), [environmentVariables.clients]: JSON.stringify(shipped.clients) }),
        ),
        [`${variable}: ${expected}, got ${JSON.stringify(String(value))}`],
      );
    }
    for (const value of [1, 60, 31 * 24 * 3600]) {
      assert.ok(construct({ clients: shipped.clients, refreshWindowSeconds: value }));
      assert.equal(parseTokenBrokerContext({ ...shipped, refreshWindowSeconds: value }).refreshWindowSeconds, value);
    }
  });

  it('refuses the other runtime settings out of bounds on the construct as cdk.json does', () => {
    const props = {
      clients: shipped.clients,
      refreshAheadMaxSeconds: 0.5,
      secretMaxAgeSeconds: -1,
      upstreamBudgetMs: Number.NaN,
      throttle: { rateLimit: 10 } as never,
    };
    assert.deepEqual(
      problemsOf(() => construct(props)),
      [
        'tokenBroker.throttle.burstLimit: is required',
        'tokenBroker.upstreamBudgetMs: must be a whole number of milliseconds from 1 to 60000',
        'tokenBroker.refreshAheadMaxSeconds: must be a whole number of seconds from 0 to 2678400',
        'tokenBroker.secretMaxAgeSeconds: must be a whole number of seconds from 0 to 2678400',
      ],
    );
  });

  it('refuses a client cdk.json declares twice, instead of keeping the last, on npm start and cdk synth', () => {
    const client = JSON.stringify(bwell);
    const other = JSON.stringify({ ...bwell, secretName: 'token-broker/other' });
    const { url, text } = cdkJsonWith(
      `{"clients": {"bwell": ${client}, "bwell": ${other}}, "stage": "v1", "stage": "v2"}`,
    );
    const expected = [
      'tokenBroker.clients.bwell: is declared more than once; JSON keeps only the last, so remove the others',
      'tokenBroker.stage: is declared more than once; JSON keeps only the last, so remove the others',
    ];
    assert.deepEqual(
      problemsOf(() => localDeployment({}, url)),
      expected,
    );
    const parsedByCdk = JSON.parse(text).context.tokenBroker;
    assert.deepEqual(
      problemsOf(() => parseTokenBrokerContext(parsedByCdk, { cdkJsonText: text })),
      expected,
    );
    // The same repeat inside TOKEN_BROKER_CLIENTS.
    assert.deepEqual(
      problemsOf(() => coldStart({ [environmentVariables.clients]: `{"bwell": ${client}, "bwell": ${other}}` })),
      ['TOKEN_BROKER_CLIENTS.bwell: is declared more than once; JSON keeps only the last, so remove the others'],
    );
  });

  it('cdk synth reads cdk.json as the CLI hands it over and fails on a repeated client, with no stack trace', () => {
    const dir = mkdtempSync(join(scratch, 'app-'));
    const client = JSON.stringify(bwell);
    const { text } = cdkJsonWith(`{"clients": {"bwell": ${client}, "bwell": ${client}}, "refreshWindowSeconds": 0}`);
    writeFileSync(join(dir, 'cdk.json'), text);
    // The CLI runs the app in the project's directory with the context it read from cdk.json.
    const result = spawnSync(
      process.execPath,
      ['--import', import.meta.resolve('tsx'), new URL('../../bin/token-broker.ts', import.meta.url).pathname],
      {
        cwd: dir,
        env: {
          ...process.env,
          CDK_CONTEXT_JSON: JSON.stringify({ ...JSON.parse(text).context, 'aws:cdk:bundling-stacks': [] }),
          CDK_OUTDIR: join(dir, 'cdk.out'),
        },
        encoding: 'utf8',
        timeout: 120_000,
      },
    );
    assert.equal(result.status, 1, result.stderr);
    assert.equal(
      result.stderr.trim(),
      [
        'invalid token broker configuration in the CDK context (cdk.json):',
        '  tokenBroker.clients.bwell: is declared more than once; JSON keeps only the last, so remove the others',
        '  tokenBroker.refreshWindowSeconds: must be a whole number of seconds from 1 to 2678400',
      ].join('\n'),
    );
  });

  it('npm start refuses to start on TOKEN_BROKER_CLIENTS naming the variable, and on a bad runtime variable', async () => {
    const run = await runScript(new URL('../../lambdas/local/dev-server.ts', import.meta.url).pathname, [], {
      PORT: '0',
      TOKEN_BROKER_CLIENTS: JSON.stringify({ first: badClients.first, second: badClients.second }),
    });
    assert.notEqual(run.code, 0);
    assert.match(
      run.stderr,
      /TOKEN_BROKER_CLIENTS\.second\.secretName: the same secret as TOKEN_BROKER_CLIENTS\.first\.secretName/,
    );
    assert.doesNotMatch(run.stderr, /listening on|^\s+at /m);
  });
});

describe('partitions (issue 16 item 7)', () => {
  const china = 'arn:aws-cn:iam::111111111111:role/reader';
  const commercial = 'arn:aws:iam::111111111111:role/reader';

  it('refuses ARNs of two partitions in one configuration, on every path', () => {
    const clients = { bwell: { ...bwell, allowedPrincipals: [commercial], adminPrincipals: [china] } };
    const expected = [
      'tokenBroker.clients.bwell.adminPrincipals[0]: is in partition aws-cn, but ' +
        'tokenBroker.clients.bwell.allowedPrincipals[0] is in aws: a deployment lives in one partition, and IAM ' +
        'there refuses the ARNs of another',
    ];
    assert.deepEqual(
      problemsOf(() => parseTokenBrokerContext({ clients })),
      expected,
    );
    assert.deepEqual(
      problemsOf(() => construct({ clients }, {})),
      expected,
    );
    assert.deepEqual(
      problemsOf(() => coldStart({ [environmentVariables.clients]: JSON.stringify(clients) })),
      underVariable(expected),
    );
    // One partition alone, whichever it is, is fine.
    assert.doesNotThrow(() => parseTokenBrokerContext({ clients: { bwell }, adminPrincipals: [china] }));
  });

  it("refuses a principal, secret or key of another partition than the stack's region, naming each", () => {
    const clients = {
      bwell: {
        ...bwell,
        secretName: 'arn:aws:secretsmanager:us-east-1:111111111111:secret:token-broker/bwell-AbCdEf',
        allowedPrincipals: [commercial],
      },
    };
    assert.deepEqual(
      problemsOf(() => construct({ clients }, { account, region: 'cn-north-1' })),
      [
        'tokenBroker.clients.bwell.secretName: is in partition aws, but the stack is in aws-cn: IAM there refuses ' +
          'the ARNs of another partition',
        'tokenBroker.clients.bwell.allowedPrincipals[0]: is in partition aws, but the stack is in aws-cn: IAM there ' +
          'refuses the ARNs of another partition',
      ],
    );
    assert.ok(construct({ clients }, { account, region: 'us-east-1' }));
    const chinese = { bwell: { ...bwell, allowedPrincipals: [china] } };
    assert.ok(construct({ clients: chinese }, { account, region: 'cn-north-1' }));
  });

  it('makes an env-agnostic stack assert its partition with a CloudFormation rule', () => {
    const broker = construct({ clients: { bwell: { ...bwell, allowedPrincipals: [china] } } }, {});
    type Rules = Record<string, { Assertions: { Assert: unknown; AssertDescription: string }[] }>;
    // CDK's own CheckBootstrapVersion rule sits beside it.
    const partitionRules = (tokenBroker: TokenBroker) =>
      Object.values((Template.fromStack(Stack.of(tokenBroker)).toJSON().Rules ?? {}) as Rules).filter((rule) =>
        JSON.stringify(rule).includes('AWS::Partition'),
      );
    const rules = partitionRules(broker);
    assert.equal(rules.length, 1, JSON.stringify(rules));
    assert.deepEqual(rules[0]?.Assertions[0]?.Assert, { 'Fn::Equals': [{ Ref: 'AWS::Partition' }, 'aws-cn'] });
    assert.match(
      rules[0]?.Assertions[0]?.AssertDescription ?? '',
      /tokenBroker\.clients\.bwell\.allowedPrincipals\[0\]/,
    );
    assert.deepEqual(partitionRules(construct({ clients: { bwell } }, {})), [], 'no ARN, no rule');
  });
});
