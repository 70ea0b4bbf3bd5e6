import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { App, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as sns from 'aws-cdk-lib/aws-sns';
import { metricNames, metrics } from '../../lambdas/contract.js';
import { ConfigError } from '../../lambdas/core/config.js';
import { defaultServiceName, serviceNameVariable } from '../../lambdas/entry/environment.js';
import { parseTokenBrokerContext } from '../../lib/context.js';
import { metricsNamespace } from '../../lib/monitoring.js';
import { TokenBroker } from '../../lib/token-broker.js';
import { TokenBrokerStack } from '../../lib/token-broker-stack.js';

const cdkJson = JSON.parse(readFileSync(new URL('../../cdk.json', import.meta.url), 'utf8'));
const shipped = cdkJson.context.tokenBroker;
const account = '111111111111';
const env = { account, region: 'us-east-1' };
const topicArn = `arn:aws:sns:us-east-1:${account}:token-broker-alarms`;
const service = [{ Name: 'service', Value: 'token-broker' }];
const source = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8');

/** `stackEnv: null` makes an environment-agnostic stack (region unknown at synth). */
function synth(tokenBroker: unknown = shipped, stackEnv: typeof env | null = env) {
  const app = new App({ context: { ...cdkJson.context, 'aws:cdk:bundling-stacks': [], tokenBroker } });
  const stack = new TokenBrokerStack(app, 'TokenBroker', {
    config: parseTokenBrokerContext(tokenBroker),
    ...(stackEnv === null ? {} : { env: stackEnv }),
  });
  return { stack, template: Template.fromStack(stack) };
}

function onlyLogicalId(template: Template, type: string): string {
  const ids = Object.keys(template.findResources(type));
  assert.equal(ids.length, 1, `expected exactly one ${type}, found ${ids.join(', ')}`);
  return ids[0] as string;
}

/** The one alarm whose description starts with `prefix`: its properties. */
function alarm(template: Template, prefix: string): Record<string, unknown> {
  const found = Object.values(template.findResources('AWS::CloudWatch::Alarm'))
    .map((a) => a.Properties)
    .filter((p) => String(p.AlarmDescription).startsWith(prefix));
  assert.equal(found.length, 1, `one alarm "${prefix}…"`);
  return found[0];
}

describe('the metrics the alarms read are the ones the function emits', () => {
  it('namespace TokenBroker and dimension service from POWERTOOLS_SERVICE_NAME, as lambda-handler.ts configures Powertools', () => {
    const handler = source('lambdas/entry/lambda-handler.ts');
    assert.equal(metricsNamespace, 'TokenBroker');
    assert.equal(serviceNameVariable, 'POWERTOOLS_SERVICE_NAME');
    assert.match(handler, /serviceName = process\.env\[serviceNameVariable\] \|\| defaultServiceName;/);
    assert.match(handler, /new Metrics\(\{ serviceName, namespace: metricsNamespace \}\)/);
    assert.match(handler, /import \{[^}]*\bmetricsNamespace\b[^}]*\} from '\.\.\/contract\.js';/);
  });

  it('the default deployment sets service=token-broker on its function, the dimension its alarms read', () => {
    const { template } = synth();
    assert.equal(defaultServiceName, 'token-broker');
    template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: { Variables: Match.objectLike({ [serviceNameVariable]: 'token-broker' }) },
    });
  });

  it('Errors carries the ErrorCode dimension, and every metric of the contract is emitted where it says', () => {
    const audit = source('lambdas/entry/audit.ts');
    assert.match(audit, /addDimension\('ErrorCode'/);
    assert.match(audit, /addMetric\('Errors' satisfies MetricName, MetricUnit\.Count/);
    assert.match(
      source('lambdas/adapters/observability.ts'),
      /addMetric\('UpstreamLatency' satisfies MetricName, MetricUnit\.Milliseconds/,
    );
    // Counters go through the BrokerMetrics port, from the core and the adapters, whichever files they are in.
    const counting = ['lambdas/core', 'lambdas/adapters']
      .flatMap((dir) =>
        readdirSync(new URL(`../../${dir}/`, import.meta.url))
          .filter((file) => file.endsWith('.ts'))
          .map((file) => source(`${dir}/${file}`)),
      )
      .join('\n');
    const emitters = {
      counter: counting,
      audit,
      adapter: source('lambdas/adapters/observability.ts'),
      powertools: source('lambdas/entry/create-handler.ts'),
    };
    for (const name of metricNames) {
      const { emittedBy } = metrics[name];
      // Powertools emits ColdStart itself when the handler asks for it.
      const emitted =
        emittedBy === 'powertools'
          ? /captureColdStartMetric: true/
          : emittedBy === 'counter'
            ? new RegExp(`count\\('${name}'`)
            : new RegExp(`'${name}'`);
      assert.match(emitters[emittedBy], emitted, `${name} (${emittedBy})`);
    }
  });
});

describe('alarms', () => {
  const { template } = synth();

  it('seven alarms, each over one 5-minute period, missing data not breaching, no actions without a topic', () => {
    const alarms = Object.values(template.findResources('AWS::CloudWatch::Alarm')).map((a) => a.Properties);
    assert.equal(alarms.length, 7);
    for (const props of alarms) {
      assert.equal(props.EvaluationPeriods, 1);
      assert.equal(props.DatapointsToAlarm, 1);
      assert.equal(props.TreatMissingData, 'notBreaching');
      assert.equal(props.ComparisonOperator, 'GreaterThanThreshold');
      assert.equal(props.AlarmActions, undefined);
      assert.equal(props.OKActions, undefined);
      const periods =
        props.Period === undefined
          ? props.Metrics.flatMap((m: { MetricStat?: { Period: number } }) => m.MetricStat?.Period ?? [])
          : [props.Period];
      assert.ok(periods.length > 0 && periods.every((p: number) => p === 300), JSON.stringify(periods));
    }
  });

  it("issuance budget: the Maximum of IssuanceBudgetUsed over every client > 80 % of a client's hourly ceiling", () => {
    const props = alarm(template, 'A client made more than 80 %');
    assert.equal(props.Threshold, 80);
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'TokenBroker',
      MetricName: 'IssuanceBudgetUsed',
      Dimensions: service,
      Statistic: 'Maximum',
      Period: 300,
      Threshold: 80,
      ComparisonOperator: 'GreaterThanThreshold',
    });
  });

  it('upstream error rate: 100 * TokenEndpointFailures / TokenEndpointCalls > 10 %, only with at least 10 calls', () => {
    const props = alarm(template, 'More than 10 % of the calls');
    assert.equal(props.Threshold, 10);
    assert.equal(props.ComparisonOperator, 'GreaterThanThreshold');
    assert.equal(props.TreatMissingData, 'notBreaching');
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Threshold: 10,
      Metrics: [
        { Id: 'expr_1', Expression: 'IF(calls >= 10, 100 * FILL(failures, 0) / calls, 0)', ReturnData: true },
        {
          Id: 'calls',
          ReturnData: false,
          MetricStat: {
            Metric: { Namespace: 'TokenBroker', MetricName: 'TokenEndpointCalls', Dimensions: service },
            Period: 300,
            Stat: 'Sum',
          },
        },
        {
          Id: 'failures',
          ReturnData: false,
          MetricStat: {
            Metric: { Namespace: 'TokenBroker', MetricName: 'TokenEndpointFailures', Dimensions: service },
            Period: 300,
            Stat: 'Sum',
          },
        },
      ],
    });
  });

  it('function throttles: AWS/Lambda Throttles of the function, Sum > 0', () => {
    const fnId = onlyLogicalId(template, 'AWS::Lambda::Function');
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'AWS/Lambda',
      MetricName: 'Throttles',
      Dimensions: [{ Name: 'FunctionName', Value: { Ref: fnId } }],
      Statistic: 'Sum',
      Period: 300,
      Threshold: 0,
      ComparisonOperator: 'GreaterThanThreshold',
    });
  });

  it('API server errors: AWS/ApiGateway 5XXError of the API, Sum > 0', () => {
    const api = Object.values(template.findResources('AWS::ApiGateway::RestApi'))[0];
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'AWS/ApiGateway',
      MetricName: '5XXError',
      Dimensions: [{ Name: 'ApiName', Value: api?.Properties.Name }],
      Statistic: 'Sum',
      Period: 300,
      Threshold: 0,
      ComparisonOperator: 'GreaterThanThreshold',
    });
  });

  it('table throttles: read and write throttle events of the table, summed, > 0', () => {
    const tableId = onlyLogicalId(template, 'AWS::DynamoDB::Table');
    const table = [{ Name: 'TableName', Value: { Ref: tableId } }];
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Threshold: 0,
      ComparisonOperator: 'GreaterThanThreshold',
      Metrics: [
        { Id: 'expr_1', Expression: 'SUM([reads, writes])', ReturnData: true },
        {
          Id: 'reads',
          MetricStat: {
            Metric: { Namespace: 'AWS/DynamoDB', MetricName: 'ReadThrottleEvents', Dimensions: table },
            Period: 300,
            Stat: 'Sum',
          },
          ReturnData: false,
        },
        {
          Id: 'writes',
          MetricStat: {
            Metric: { Namespace: 'AWS/DynamoDB', MetricName: 'WriteThrottleEvents', Dimensions: table },
            Period: 300,
            Stat: 'Sum',
          },
          ReturnData: false,
        },
      ],
    });
  });

  it('shared cache errors: TokenBroker SharedCacheErrors with service=token-broker, Sum > 0', () => {
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'TokenBroker',
      MetricName: 'SharedCacheErrors',
      Dimensions: service,
      Statistic: 'Sum',
      Period: 300,
      Threshold: 0,
      ComparisonOperator: 'GreaterThanThreshold',
    });
  });

  it('refused token endpoints: TokenBroker TokenEndpointRefused with service=token-broker, Sum > 0 (any refusal)', () => {
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'TokenBroker',
      MetricName: 'TokenEndpointRefused',
      Dimensions: service,
      Statistic: 'Sum',
      Period: 300,
      Threshold: 0,
      ComparisonOperator: 'GreaterThanThreshold',
      EvaluationPeriods: 1,
      TreatMissingData: 'notBreaching',
    });
    const ids = Object.keys(template.findResources('AWS::CloudWatch::Alarm'));
    assert.ok(
      ids.some((id) => id.startsWith('TokenBrokerMonitoringTokenEndpointRefused')),
      ids.join(', '),
    );
    assert.match(source('docs/deploy.md'), /\| `TokenEndpointRefused` /, 'the runbook lists the alarm');
  });

  it('every alarm description points the on-call engineer at the runbook', () => {
    for (const a of Object.values(template.findResources('AWS::CloudWatch::Alarm'))) {
      assert.match(a.Properties.AlarmDescription, /docs\/deploy\.md, "Alarms"/);
    }
  });
});

describe('alarm notifications', () => {
  it('alarmTopicArn in the context: every alarm notifies the topic on ALARM and on OK', () => {
    const { template } = synth({ ...shipped, alarmTopicArn: topicArn });
    const alarms = Object.values(template.findResources('AWS::CloudWatch::Alarm'));
    assert.equal(alarms.length, 7);
    for (const a of alarms) {
      assert.deepEqual(a.Properties.AlarmActions, [topicArn]);
      assert.deepEqual(a.Properties.OKActions, [topicArn]);
    }
    template.resourceCountIs('AWS::SNS::Topic', 0);
  });

  it('the construct prop alarmTopic does the same for any topic', () => {
    const stack = new Stack(new App({ context: { ...cdkJson.context, 'aws:cdk:bundling-stacks': [] } }), 'Host', {
      env,
    });
    const topic = new sns.Topic(stack, 'Ops', { enforceSSL: true });
    new TokenBroker(stack, 'Broker', { clients: shipped.clients, alarmTopic: topic });
    const template = Template.fromStack(stack);
    const topicId = onlyLogicalId(template, 'AWS::SNS::Topic');
    template.allResourcesProperties('AWS::CloudWatch::Alarm', {
      AlarmActions: [{ Ref: topicId }],
      OKActions: [{ Ref: topicId }],
    });
  });

  it('a topic in another region, or a FIFO topic, fails the synth naming the field', () => {
    assert.throws(
      () => synth({ ...shipped, alarmTopicArn: `arn:aws:sns:eu-west-1:${account}:ops` }),
      (error: unknown) =>
        error instanceof ConfigError && /tokenBroker\.alarmTopicArn: the topic is in eu-west-1/.test(error.message),
    );
    assert.throws(
      () => synth({ ...shipped, alarmTopicArn: `arn:aws:sns:us-east-1:${account}:ops.fifo` }),
      /tokenBroker\.alarmTopicArn: must be the ARN of a standard \(not FIFO\) SNS topic/,
    );
    assert.doesNotThrow(() => synth({ ...shipped, alarmTopicArn: `arn:aws:sns:eu-west-1:${account}:ops` }, null));
  });
});

describe('the dashboard', () => {
  const { template, stack } = synth();
  const dashboardId = onlyLogicalId(template, 'AWS::CloudWatch::Dashboard');
  const body = JSON.stringify(stack.resolve(template.findResources('AWS::CloudWatch::Dashboard')[dashboardId]));
  /** The widgets, tokens replaced by a marker: the body is an Fn::Join of JSON text around references. */
  const widgets = (() => {
    const parts = template.findResources('AWS::CloudWatch::Dashboard')[dashboardId]?.Properties.DashboardBody[
      'Fn::Join'
    ][1] as unknown[];
    const text = parts.map((part) => (typeof part === 'string' ? part : 'REF')).join('');
    return JSON.parse(text).widgets as { type: string; properties: { title: string; metrics?: unknown[][] } }[];
  })();
  const widget = (title: string) => {
    const found = widgets.find((w) => w.properties.title === title);
    assert.ok(found, `widget "${title}"`);
    return JSON.stringify(found.properties.metrics);
  };

  it('is one dashboard, its name a stack output', () => {
    template.resourceCountIs('AWS::CloudWatch::Dashboard', 1);
    template.hasOutput('DashboardName', { Value: { Ref: dashboardId } });
    assert.equal(widgets.filter((w) => w.type === 'metric').length, 11);
  });

  it('shows the alarms', () => {
    const alarms = widgets.find((w) => w.type === 'alarm');
    assert.ok(alarms);
    for (const id of Object.keys(template.findResources('AWS::CloudWatch::Alarm'))) {
      assert.ok(body.includes(`"${id}","Arn"`), id);
    }
  });

  it('cache outcomes: MemoryHits, TableHits, TokensFetched, TokensRefreshed, StaleTokensServed', () => {
    const metrics = widget('Cache outcomes (tokens served, by source)');
    for (const name of ['MemoryHits', 'TableHits', 'TokensFetched', 'TokensRefreshed', 'StaleTokensServed']) {
      assert.ok(metrics.includes(`["TokenBroker","${name}","service","token-broker"`), name);
    }
  });

  it('token endpoint calls and failures, with the error rate', () => {
    const metrics = widget('Token endpoint calls and failures');
    assert.match(metrics, /"TokenBroker","TokenEndpointCalls","service","token-broker"/);
    assert.match(metrics, /"TokenBroker","TokenEndpointFailures","service","token-broker"/);
    assert.match(metrics, /100 \* FILL\(failures, 0\) \/ calls/);
  });

  it('upstream latency p50 and p99', () => {
    const metrics = widget('Upstream latency (token endpoint, retries included)');
    assert.match(metrics, /"UpstreamLatency","service","token-broker",\{"label":"p50","stat":"p50"\}/);
    assert.match(metrics, /"UpstreamLatency","service","token-broker",\{"label":"p99","stat":"p99"\}/);
  });

  it('errors by code: a SEARCH over {TokenBroker,ErrorCode,service}', () => {
    const metrics = widget('Errors by code');
    assert.ok(
      metrics.includes(
        `SEARCH('{TokenBroker,ErrorCode,service} MetricName=\\"Errors\\" service=\\"token-broker\\"', 'Sum', 300)`,
      ),
      metrics,
    );
  });

  it("the broker's other events, ColdStart with Powertools' function_name dimension", () => {
    const metrics = widget('Broker events');
    for (const name of [
      'Invalidations',
      'SharedCacheErrors',
      'LeaseWaits',
      'StaleServed',
      'SecretReloads',
      'SecretFallbacks',
      'ForcedRefreshes',
      'Cooldowns',
      'CooldownSkips',
      'IssuanceBudgetExhausted',
    ]) {
      assert.ok(metrics.includes(`"${name}","service","token-broker"`), name);
    }
    assert.match(metrics, /"ColdStart","function_name","REF","service","token-broker"/);
  });

  it('Lambda duration, invocations, throttles and concurrency of the function', () => {
    const lambda = [
      widget('Function invocations, errors and throttles'),
      widget('Function duration'),
      widget('Function concurrency'),
    ].join();
    for (const name of ['Invocations', 'Errors', 'Throttles', 'Duration', 'ConcurrentExecutions']) {
      assert.ok(lambda.includes(`["AWS/Lambda","${name}","FunctionName","REF"`), name);
    }
  });

  it('API Gateway count, 4XX, 5XX and latency of the API', () => {
    const api = [widget('API requests and errors'), widget('API latency')].join();
    for (const name of ['Count', '4XXError', '5XXError', 'Latency', 'IntegrationLatency']) {
      assert.ok(api.includes(`["AWS/ApiGateway","${name}","ApiName","TokenBroker-api"`), name);
    }
  });

  it('DynamoDB throttles of the table', () => {
    const metrics = widget('Table throttles');
    assert.match(metrics, /\["AWS\/DynamoDB","ReadThrottleEvents","TableName","REF"/);
    assert.match(metrics, /\["AWS\/DynamoDB","WriteThrottleEvents","TableName","REF"/);
    assert.ok(body.includes(`{"Ref":"${onlyLogicalId(template, 'AWS::DynamoDB::Table')}"}`));
  });
});
