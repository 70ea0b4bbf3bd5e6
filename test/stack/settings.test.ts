import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { App, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as iam from 'aws-cdk-lib/aws-iam';
import { runtimeSettingNames, runtimeSettings } from '../../lambdas/contract.js';
import { functionTimeoutMs } from '../../lambdas/core/broker.js';
import { ConfigError } from '../../lambdas/core/config.js';
import { functionEnvironmentOf } from '../../lambdas/core/settings.js';
import { environmentVariables, serviceNameVariable } from '../../lambdas/entry/environment.js';
import { parseTokenBrokerContext } from '../../lib/context.js';
import { TokenBroker, type TokenBrokerProps } from '../../lib/token-broker.js';
import { TokenBrokerStack } from '../../lib/token-broker-stack.js';
import {
  account,
  apiPolicy,
  callerStatements,
  cdkJson,
  env,
  type Json,
  list,
  problemsOf,
  shipped,
  synth,
} from './support.js';

// Every runtime setting is a prop of the construct: a setting added to the table without one fails tsc here
// (tsconfig.cdk.json, which type-checks the construct).
type PropsCarryEverySetting = Required<Pick<TokenBrokerProps, (typeof runtimeSettingNames)[number]>>;
const everySettingAsProp: PropsCarryEverySetting = {
  refreshWindowSeconds: 1,
  upstreamBudgetMs: 1,
  refreshAheadMaxSeconds: 1,
  secretMaxAgeSeconds: 1,
};

describe('the construct and the contract name the same runtime settings', () => {
  it('takes every runtime setting of the contract as a prop', () => {
    assert.deepEqual(Object.keys(everySettingAsProp).sort(), [...runtimeSettingNames].sort());
  });
});

describe('deployment settings in the tokenBroker context', () => {
  it('reads the stack name, stage, throttle, upstream budget, refresh-ahead and secret age', () => {
    const settings = {
      stackName: 'TokenBroker-prod',
      stage: 'prod',
      throttle: { rateLimit: 12.5, burstLimit: 40 },
      upstreamBudgetMs: 4000,
      refreshAheadMaxSeconds: 120,
      secretMaxAgeSeconds: 60,
    };
    const parsed = parseTokenBrokerContext({ ...shipped, ...settings });
    const { clients: _clients, ...rest } = parsed;
    assert.deepEqual(rest, settings);
  });

  it('leaves every setting out when cdk.json does not name it, so the defaults apply', () => {
    assert.deepEqual(Object.keys(parseTokenBrokerContext(shipped)), ['clients']);
  });

  it('names every bad setting by its path', () => {
    const message = problemsOf({
      ...shipped,
      stackName: '1-starts-with-a-digit',
      stage: 'has space',
      throttle: { rateLimit: 0, burstLimit: 2.5, colour: 'red' },
      upstreamBudgetMs: 0,
      refreshAheadMaxSeconds: -1,
      secretMaxAgeSeconds: '300',
    });
    for (const expected of [
      /tokenBroker\.stackName: must be a CloudFormation stack name/,
      /tokenBroker\.stage: must be an API Gateway stage name/,
      /tokenBroker\.throttle\.rateLimit: must be a positive number/,
      /tokenBroker\.throttle\.burstLimit: must be a whole number of at least 1/,
      /tokenBroker\.throttle\.colour: unknown field/,
      /tokenBroker\.upstreamBudgetMs: must be a whole number of milliseconds from 1 to 60000/,
      /tokenBroker\.refreshAheadMaxSeconds: must be a whole number of seconds from 0 to 2678400/,
      /tokenBroker\.secretMaxAgeSeconds: must be a whole number of seconds from 0 to 2678400/,
    ]) {
      assert.match(message, expected);
    }
    assert.match(problemsOf({ ...shipped, throttle: [1, 2] }), /tokenBroker\.throttle: must be an object/);
  });
});

// Principals of another account: the stack names them in the API's resource policy.
const partner = '222222222222';
const claimsService = `arn:aws:iam::${partner}:role/claims-service`;
const oncall = `arn:aws:iam::${partner}:role/platform-oncall`;
const withPrincipals = {
  ...shipped,
  allowedAccounts: [account, partner],
  clients: { bwell: { ...shipped.clients.bwell, allowedPrincipals: [claimsService], adminPrincipals: [oncall] } },
};

/** The function's environment variables in a synthesized template. */
function functionVariables(template: Template): Record<string, unknown> {
  const fns = Object.values(template.findResources('AWS::Lambda::Function'));
  assert.equal(fns.length, 1, 'one function');
  return fns[0]?.Properties.Environment.Variables as Record<string, unknown>;
}

/** A role of the app granted bwell's token and invalidation through identity policies: their resources. */
function grantedResources(stack: TokenBrokerStack, template: () => Template): string {
  const role = new iam.Role(stack, 'Caller', { assumedBy: new iam.AccountRootPrincipal() });
  stack.broker.grantFetchToken(role, 'bwell');
  stack.broker.grantInvalidate(role, 'bwell');
  const t = template();
  return JSON.stringify(callerStatements(t, stack).filter((s) => list(s.Action).includes('execute-api:Invoke')));
}

describe('stage', () => {
  it('names the stage resource, the resource policy entries and the identity-policy grants', () => {
    const built = synth({ ...withPrincipals, stage: 'prod' });
    const granted = grantedResources(built.stack, () => built.template);
    const { template, stack } = built;
    template.hasResourceProperties('AWS::ApiGateway::Stage', { StageName: 'prod' });
    const allows = apiPolicy(template).filter((statement) => statement.Effect === 'Allow');
    assert.deepEqual(allows.flatMap((statement) => list(statement.Resource as string | string[])).sort(), [
      'execute-api:/prod/DELETE/clients/bwell/token',
      'execute-api:/prod/POST/clients/bwell/token',
    ]);
    assert.match(granted, /\/prod\/POST\/clients\/bwell\/token"/);
    assert.match(granted, /\/prod\/DELETE\/clients\/bwell\/token"/);
    assert.match(
      JSON.stringify(stack.resolve(stack.broker.tokenRouteArn('bwell'))),
      /\/prod\/POST\/clients\/bwell\/token"/,
    );
    assert.equal(stack.broker.stageName, 'prod');
    assert.doesNotMatch(JSON.stringify(template.toJSON()), /\/v1\//, 'no route left on the default stage');
  });

  it('is v1 when cdk.json names none', () => {
    const { template, broker } = synth(withPrincipals);
    template.hasResourceProperties('AWS::ApiGateway::Stage', { StageName: 'v1' });
    assert.equal(broker.stageName, 'v1');
    assert.ok(
      apiPolicy(template).some((statement) => statement.Resource === 'execute-api:/v1/POST/clients/bwell/token'),
    );
  });

  it('a construct stage name that API Gateway would refuse fails synth', () => {
    const stack = new Stack(new App({ context: { 'aws:cdk:bundling-stacks': [] } }), 'Host', { env });
    assert.throws(
      () => new TokenBroker(stack, 'Broker', { clients: shipped.clients, stageName: 'v 1' }),
      (error: unknown) =>
        error instanceof ConfigError && /tokenBroker\.stage: must be an API Gateway stage name/.test(error.message),
    );
  });
});

describe('throttle', () => {
  it('reaches the stage as its rate and burst limits', () => {
    const { template } = synth({ ...shipped, throttle: { rateLimit: 12.5, burstLimit: 40 } });
    template.hasResourceProperties('AWS::ApiGateway::Stage', {
      MethodSettings: Match.arrayWith([
        Match.objectLike({ HttpMethod: '*', ResourcePath: '/*', ThrottlingRateLimit: 12.5, ThrottlingBurstLimit: 40 }),
      ]),
    });
  });

  it('is 50 requests/s with a burst of 100 when cdk.json names none', () => {
    const { template } = synth(shipped);
    template.hasResourceProperties('AWS::ApiGateway::Stage', {
      MethodSettings: Match.arrayWith([Match.objectLike({ ThrottlingRateLimit: 50, ThrottlingBurstLimit: 100 })]),
    });
  });
});

describe('runtime settings in the function environment', () => {
  const runtimeVariables = [
    environmentVariables.upstreamBudgetMs,
    environmentVariables.refreshAheadMaxSeconds,
    environmentVariables.secretMaxAgeSeconds,
  ];

  it('sets the upstream budget, refresh-ahead and secret age when configured', () => {
    const { template } = synth({
      ...shipped,
      upstreamBudgetMs: 4000,
      refreshAheadMaxSeconds: 120,
      secretMaxAgeSeconds: 0,
    });
    const variables = functionVariables(template);
    assert.equal(variables[environmentVariables.upstreamBudgetMs], '4000');
    assert.equal(variables[environmentVariables.refreshAheadMaxSeconds], '120');
    assert.equal(variables[environmentVariables.secretMaxAgeSeconds], '0');
  });

  it('sets every runtime setting of the contract as functionEnvironmentOf names it, and nothing else of them', () => {
    // Each at its minimum, which fits the function timeout too; the hosts ride along as the stack sets them.
    const given = {
      ...Object.fromEntries(runtimeSettingNames.map((name) => [name, runtimeSettings[name].minimum])),
      tokenEndpointHosts: ['login.example.com'],
    };
    const variables = functionVariables(synth({ ...shipped, ...given }).template);
    const expected = functionEnvironmentOf(given);
    assert.equal(Object.keys(expected).length, runtimeSettingNames.length + 1);
    const runtimeVariables = new Set(Object.keys(expected));
    assert.deepEqual(
      Object.fromEntries(Object.entries(variables).filter(([name]) => runtimeVariables.has(name))),
      expected,
    );
  });

  it("leaves each out when not configured, so the function's defaults apply", () => {
    const variables = functionVariables(synth(shipped).template);
    for (const name of runtimeVariables) assert.equal(Object.hasOwn(variables, name), false, name);
    const onlyBudget = functionVariables(synth({ ...shipped, upstreamBudgetMs: 3000 }).template);
    assert.deepEqual(
      runtimeVariables.filter((name) => Object.hasOwn(onlyBudget, name)),
      [environmentVariables.upstreamBudgetMs],
    );
  });

  it('fails synth, naming the setting, when the upstream budget does not fit the function timeout', () => {
    assert.throws(
      () => synth({ ...shipped, upstreamBudgetMs: 8000 }),
      (error: unknown) =>
        error instanceof ConfigError &&
        new RegExp(`tokenBroker\\.upstreamBudgetMs: .*over the function timeout of ${functionTimeoutMs} ms`).test(
          error.message,
        ),
    );
    // The largest budget the runtime accepts is accepted at synth too.
    const fitting = Number(/at most (\d+) ms fits/.exec(problemOfSynth({ ...shipped, upstreamBudgetMs: 8000 }))?.[1]);
    assert.ok(fitting > 0);
    assert.doesNotThrow(() => synth({ ...shipped, upstreamBudgetMs: fitting }));
    assert.throws(() => synth({ ...shipped, upstreamBudgetMs: fitting + 1 }), /tokenBroker\.upstreamBudgetMs/);
  });
});

describe('approved token endpoint hosts (tokenBroker.tokenEndpointHosts)', () => {
  const pools = '*.auth.us-east-1.amazoncognito.com';

  it('reach the function as TOKEN_BROKER_TOKEN_ENDPOINT_HOSTS, comma-separated, and are absent when unset', () => {
    const { template } = synth({ ...shipped, tokenEndpointHosts: [pools, 'login.example.com'] });
    assert.equal(functionVariables(template).TOKEN_BROKER_TOKEN_ENDPOINT_HOSTS, `${pools},login.example.com`);
    assert.equal(environmentVariables.tokenEndpointHosts, 'TOKEN_BROKER_TOKEN_ENDPOINT_HOSTS');
    assert.equal(Object.hasOwn(functionVariables(synth(shipped).template), 'TOKEN_BROKER_TOKEN_ENDPOINT_HOSTS'), false);
  });

  it('fail synth, naming the entry, when a pattern is malformed or too broad, in the context and on the construct', () => {
    const message = problemsOf({ ...shipped, tokenEndpointHosts: ['*.amazoncognito.com', 'https://a.example.com'] });
    assert.match(message, /tokenBroker\.tokenEndpointHosts\[0\]: is too broad/);
    assert.match(message, /tokenBroker\.tokenEndpointHosts\[1\]: must be a lowercase DNS host name/);
    assert.match(
      problemsOf({ ...shipped, tokenEndpointHosts: [] }),
      /tokenBroker\.tokenEndpointHosts: must be a non-empty array/,
    );
    const stack = new Stack(new App({ context: { ...cdkJson.context, 'aws:cdk:bundling-stacks': [] } }), 'Host', {
      env,
    });
    assert.throws(
      () => new TokenBroker(stack, 'Broker', { clients: shipped.clients, tokenEndpointHosts: ['*.com'] }),
      (error: unknown) =>
        error instanceof ConfigError && /tokenBroker\.tokenEndpointHosts\[0\]: is too broad/.test(error.message),
    );
  });
});

function problemOfSynth(tokenBroker: unknown): string {
  try {
    synth(tokenBroker);
  } catch (error) {
    return String(error);
  }
  assert.fail('expected synth to fail');
}

describe('several deployments in one account', () => {
  const app = new App({ context: { ...cdkJson.context, 'aws:cdk:bundling-stacks': [], tokenBroker: shipped } });
  const stackFor = (stackName: string) => {
    const config = parseTokenBrokerContext({ ...shipped, stackName });
    return new TokenBrokerStack(app, stackName, { config, env });
  };
  // Both in the app before either is synthesized: an app is synthesized once.
  const stacks = [stackFor('TokenBroker'), stackFor('TokenBroker-prod')];
  const [defaultStack, prodStack] = stacks.map((stack) => Template.fromStack(stack)) as [Template, Template];

  /** Every `service` dimension value the stack's alarms read. */
  function alarmServices(template: Template): string[] {
    const services = new Set<string>();
    const visit = (value: unknown): void => {
      if (Array.isArray(value)) value.forEach(visit);
      else if (typeof value === 'object' && value !== null) {
        const record = value as Json;
        if (record.Name === 'service' && typeof record.Value === 'string') services.add(record.Value);
        Object.values(record).forEach(visit);
      }
    };
    for (const alarm of Object.values(template.findResources('AWS::CloudWatch::Alarm'))) visit(alarm.Properties);
    return [...services];
  }

  it('the default stack keeps service=token-broker; another stack name is its own service', () => {
    assert.equal(functionVariables(defaultStack)[serviceNameVariable], 'token-broker');
    assert.equal(functionVariables(prodStack)[serviceNameVariable], 'TokenBroker-prod');
    assert.deepEqual(alarmServices(defaultStack), ['token-broker']);
    assert.deepEqual(alarmServices(prodStack), ['TokenBroker-prod']);
  });

  it("the dashboard reads each deployment's own metrics", () => {
    const body = (template: Template) =>
      JSON.stringify(Object.values(template.findResources('AWS::CloudWatch::Dashboard')));
    assert.match(body(prodStack), /TokenBroker-prod/);
    assert.doesNotMatch(body(prodStack), /token-broker/);
  });

  it('no two deployments give a resource the same physical name', () => {
    const explicitNames = (template: Template) =>
      [
        ['AWS::ApiGateway::RestApi', 'Name'],
        ['AWS::CloudWatch::Dashboard', 'DashboardName'],
        ['AWS::CloudWatch::Alarm', 'AlarmName'],
        ['AWS::Logs::LogGroup', 'LogGroupName'],
        ['AWS::Lambda::Function', 'FunctionName'],
        ['AWS::DynamoDB::Table', 'TableName'],
        ['AWS::IAM::Role', 'RoleName'],
      ].flatMap(([type, field]) =>
        Object.values(template.findResources(type as string)).flatMap((r) => {
          const name = r.Properties?.[field as string];
          return name === undefined ? [] : [`${type} ${JSON.stringify(name)}`];
        }),
      );
    const prodNames = new Set(explicitNames(prodStack));
    assert.deepEqual(
      explicitNames(defaultStack).filter((name) => prodNames.has(name)),
      [],
    );
    // The one explicit name there is, the API's, carries the stack name.
    assert.ok(prodNames.has('AWS::ApiGateway::RestApi "TokenBroker-prod-api"'), [...prodNames].join(', '));
  });
});

describe("the handler's service name", () => {
  const handlerModule = fileURLToPath(new URL('../../lambdas/entry/lambda-handler.ts', import.meta.url));
  /** Imports the handler in a fresh process (as a cold start does) and publishes one metric. */
  function emittedService(serviceName: string | undefined): string {
    const script =
      `const m = await import(${JSON.stringify(handlerModule)});` +
      "m.metrics.addMetric('Probe', 'Count', 1); m.metrics.publishStoredMetrics();" +
      'console.error(JSON.stringify({ serviceName: m.serviceName }));';
    const childEnv: NodeJS.ProcessEnv = {
      ...process.env,
      [environmentVariables.tableName]: 'tokens',
      [environmentVariables.sealingSecretArn]:
        'arn:aws:secretsmanager:us-east-1:123456789012:secret:token-broker/sealing-key-AbCdEf',
      [environmentVariables.clients]: JSON.stringify(shipped.clients),
    };
    delete childEnv[serviceNameVariable];
    if (serviceName !== undefined) childEnv[serviceNameVariable] = serviceName;
    const result = spawnSync(process.execPath, ['--import', 'tsx', '-e', script], {
      env: childEnv,
      encoding: 'utf8',
      timeout: 30_000,
    });
    assert.equal(result.status, 0, result.stderr);
    const emf = result.stdout
      .split('\n')
      .filter((line) => line.includes('"Probe"'))
      .map((line) => JSON.parse(line) as Json);
    assert.equal(emf.length, 1, result.stdout);
    const reported = JSON.parse(result.stderr.trim().split('\n').at(-1) ?? '{}') as Json;
    assert.equal(reported.serviceName, emf[0]?.service);
    return String(emf[0]?.service);
  }

  it('follows POWERTOOLS_SERVICE_NAME, and is token-broker without it', () => {
    assert.equal(emittedService('TokenBroker-prod'), 'TokenBroker-prod');
    assert.equal(emittedService(undefined), 'token-broker');
  });
});

describe("API Gateway's own refusals", () => {
  const { template } = synth(shipped);

  it('answer a missing or bad signature, a denied policy and an expired token in the OAuth shape with 403', () => {
    for (const type of ['ACCESS_DENIED', 'MISSING_AUTHENTICATION_TOKEN', 'INVALID_SIGNATURE', 'EXPIRED_TOKEN']) {
      template.hasResourceProperties('AWS::ApiGateway::GatewayResponse', {
        ResponseType: type,
        StatusCode: '403',
        ResponseTemplates: {
          'application/json': '{"error":"access_denied","error_description":$context.error.messageString}',
        },
      });
    }
  });

  it('answer a body over 10 MB with 413 invalid_request', () => {
    template.hasResourceProperties('AWS::ApiGateway::GatewayResponse', {
      ResponseType: 'REQUEST_TOO_LARGE',
      StatusCode: '413',
      ResponseTemplates: {
        'application/json': '{"error":"invalid_request","error_description":$context.error.messageString}',
      },
    });
  });

  it('each template is JSON once API Gateway puts a quoted message in', () => {
    for (const response of Object.values(template.findResources('AWS::ApiGateway::GatewayResponse'))) {
      const body = String(response.Properties.ResponseTemplates['application/json'])
        .replace('$context.error.messageString', JSON.stringify('Missing Authentication Token'))
        .replace('$context.error.validationErrorString', 'instance failed to match');
      const parsed = JSON.parse(body) as Json;
      assert.deepEqual(Object.keys(parsed), ['error', 'error_description'], body);
    }
  });
});
