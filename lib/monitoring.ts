import { Duration } from 'aws-cdk-lib';
import type * as apigateway from 'aws-cdk-lib/aws-apigateway';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as sns from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';
import { issuanceBudgetWarnPercent } from '../lambdas/core/issuance-budget.js';

/**
 * What the function's Powertools Metrics emit (`lambdas/entry/lambda-handler.ts`): this namespace, and the
 * default dimension `service` (the function's POWERTOOLS_SERVICE_NAME) on every metric. An alarm whose
 * dimensions differ watches a metric nobody writes, or another deployment's.
 */
export { metricsNamespace } from '../lambdas/contract.js';

import { type MetricName, metricsNamespace } from '../lambdas/contract.js';

/** Every metric name the function emits: the broker's counters, the audit's outcomes, and Powertools' own. */
export type BrokerMetricName = MetricName;

/** All alarms are judged over one period of this length. */
export const alarmPeriod = Duration.minutes(5);
/** The upstream error-rate alarm ignores a period with fewer token-endpoint calls than this: 1 of 3 is noise. */
export const upstreamErrorRateMinCalls = 10;
/** Percent of token-endpoint calls that failed, above which the upstream alarm fires. */
export const upstreamErrorRateThresholdPercent = 10;

export interface TokenBrokerMonitoringProps {
  readonly fn: lambda.IFunction;
  /** The function's Powertools service name: the `service` dimension of the metrics it emits. */
  readonly serviceName: string;
  readonly api: apigateway.RestApi;
  readonly table: dynamodb.ITable;
  /** Gets every alarm's ALARM and OK notifications. */
  readonly alarmTopic?: sns.ITopic;
}

/** The broker's alarms, by what they watch. */
export interface TokenBrokerAlarms {
  /** More than 10 % of the calls to identity providers failed in 5 minutes (with at least 10 calls). */
  readonly upstreamErrorRate: cloudwatch.Alarm;
  /** Lambda throttled the function at least once in 5 minutes. */
  readonly functionThrottles: cloudwatch.Alarm;
  /** The API answered at least one 5XX in 5 minutes. */
  readonly apiServerErrors: cloudwatch.Alarm;
  /** DynamoDB throttled at least one read or write on the token table in 5 minutes. */
  readonly tableThrottles: cloudwatch.Alarm;
  /** The broker could not use the shared cache at least once in 5 minutes. */
  readonly sharedCacheErrors: cloudwatch.Alarm;
  /** A discovery document named a token endpoint on a host not approved for its client, at least once in 5 minutes. */
  readonly tokenEndpointRefused: cloudwatch.Alarm;
  /** Some client made more than 80 % of its maxTokenRequestsPerHour in the current hour. */
  readonly issuanceBudget: cloudwatch.Alarm;
}

/** The metric a function with Powertools service name `service` emits under `name`. */
export function brokerMetric(
  service: string,
  name: BrokerMetricName,
  options: cloudwatch.MetricOptions = {},
): cloudwatch.Metric {
  return new cloudwatch.Metric({
    namespace: metricsNamespace,
    metricName: name,
    dimensionsMap: { service },
    statistic: cloudwatch.Stats.SUM,
    period: alarmPeriod,
    ...options,
  });
}

/** CloudWatch alarms on the broker's failure signals, and one dashboard of everything it reports. */
export class TokenBrokerMonitoring extends Construct {
  /** The `service` dimension the broker's own metrics are read with. */
  readonly serviceName: string;
  readonly alarms: TokenBrokerAlarms;
  readonly dashboard: cloudwatch.Dashboard;

  constructor(scope: Construct, id: string, props: TokenBrokerMonitoringProps) {
    super(scope, id);
    const { fn, api, table, serviceName } = props;
    this.serviceName = serviceName;
    const brokerMetricOf = (name: BrokerMetricName, options: cloudwatch.MetricOptions = {}) =>
      brokerMetric(serviceName, name, options);

    // Failures are only emitted when they happen: a period without any is "no data", filled as 0 failures.
    // Below the minimum of calls the rate reads 0, so one failed call at night is not a 100 % error rate.
    const upstreamErrorRate = new cloudwatch.MathExpression({
      expression: `IF(calls >= ${upstreamErrorRateMinCalls}, 100 * FILL(failures, 0) / calls, 0)`,
      usingMetrics: { calls: brokerMetricOf('TokenEndpointCalls'), failures: brokerMetricOf('TokenEndpointFailures') },
      period: alarmPeriod,
      label: 'Token endpoint error rate (%)',
    });
    // On demand, DynamoDB reports throttling per table as read and write throttle events, each only when it
    // happens; SUM over both adds whichever are present.
    const tableThrottles = new cloudwatch.MathExpression({
      expression: 'SUM([reads, writes])',
      usingMetrics: {
        reads: table.metric('ReadThrottleEvents', { statistic: cloudwatch.Stats.SUM, period: alarmPeriod }),
        writes: table.metric('WriteThrottleEvents', { statistic: cloudwatch.Stats.SUM, period: alarmPeriod }),
      },
      period: alarmPeriod,
      label: 'Throttled table requests',
    });

    const above = (
      alarmId: string,
      metric: cloudwatch.IMetric,
      threshold: number,
      alarmDescription: string,
    ): cloudwatch.Alarm =>
      new cloudwatch.Alarm(this, alarmId, {
        metric,
        threshold,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 1,
        datapointsToAlarm: 1,
        // Every watched metric is absent while nothing happens (no traffic, no failure): that is healthy.
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        alarmDescription,
      });

    this.alarms = {
      upstreamErrorRate: above(
        'UpstreamErrorRate',
        upstreamErrorRate,
        upstreamErrorRateThresholdPercent,
        `More than ${upstreamErrorRateThresholdPercent} % of the calls to identity providers' token endpoints ` +
          `failed in 5 minutes (at least ${upstreamErrorRateMinCalls} calls). See docs/deploy.md, "Alarms".`,
      ),
      functionThrottles: above(
        'FunctionThrottles',
        fn.metricThrottles({ statistic: cloudwatch.Stats.SUM, period: alarmPeriod }),
        0,
        'Lambda throttled the token broker function (account or reserved concurrency exhausted). ' +
          'See docs/deploy.md, "Alarms".',
      ),
      apiServerErrors: above(
        'ApiServerErrors',
        api.metricServerError({ statistic: cloudwatch.Stats.SUM, period: alarmPeriod }),
        0,
        'The token broker API answered 5XX (broker failure, identity provider failure or timeout). ' +
          'See docs/deploy.md, "Alarms".',
      ),
      tableThrottles: above(
        'TableThrottles',
        tableThrottles,
        0,
        'DynamoDB throttled requests to the token cache table. See docs/deploy.md, "Alarms".',
      ),
      sharedCacheErrors: above(
        'SharedCacheErrors',
        brokerMetricOf('SharedCacheErrors'),
        0,
        'The broker failed to read or write its DynamoDB cache and fell back to the identity provider. ' +
          'See docs/deploy.md, "Alarms".',
      ),
      tokenEndpointRefused: above(
        'TokenEndpointRefused',
        brokerMetricOf('TokenEndpointRefused'),
        0,
        "A discovery document named a token endpoint on a host not approved for its client; the client's " +
          'secret was not sent and its callers get 502. See docs/deploy.md, "Alarms".',
      ),
      issuanceBudget: above(
        'IssuanceBudget',
        brokerMetricOf('IssuanceBudgetUsed', { statistic: cloudwatch.Stats.MAXIMUM }),
        issuanceBudgetWarnPercent,
        `A client made more than ${issuanceBudgetWarnPercent} % of its hourly token requests ` +
          '(maxTokenRequestsPerHour); at 100 % the broker stops calling its provider until the hour ends. ' +
          'See docs/deploy.md, "Alarms".',
      ),
    };
    if (props.alarmTopic !== undefined) {
      const action = new actions.SnsAction(props.alarmTopic);
      for (const alarm of Object.values(this.alarms) as cloudwatch.Alarm[]) {
        alarm.addAlarmAction(action);
        alarm.addOkAction(action);
      }
    }

    this.dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      defaultInterval: Duration.hours(6),
      periodOverride: cloudwatch.PeriodOverride.AUTO,
    });
    const count = (name: BrokerMetricName) => brokerMetricOf(name, { label: name });
    const fnMetric = (metricName: string, statistic: string, label: string) =>
      fn.metric(metricName, { statistic, label, period: alarmPeriod });
    const apiMetric = (metricName: string, statistic: string, label: string) =>
      api.metric(metricName, { statistic, label, period: alarmPeriod });
    this.dashboard.addWidgets(
      new cloudwatch.AlarmStatusWidget({
        title: 'Alarms',
        alarms: Object.values(this.alarms) as cloudwatch.IAlarm[],
        width: 24,
        height: 3,
      }),
    );
    this.dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Cache outcomes (tokens served, by source)',
        left: [
          count('MemoryHits'),
          count('TableHits'),
          count('TokensFetched'),
          count('TokensRefreshed'),
          count('StaleTokensServed'),
        ],
        stacked: true,
        width: 12,
      }),
      new cloudwatch.GraphWidget({
        title: 'Token endpoint calls and failures',
        left: [count('TokenEndpointCalls'), count('TokenEndpointFailures')],
        right: [upstreamErrorRate],
        rightYAxis: { min: 0, max: 100, label: '%', showUnits: false },
        width: 12,
      }),
    );
    this.dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Upstream latency (token endpoint, retries included)',
        left: [
          brokerMetricOf('UpstreamLatency', { statistic: cloudwatch.Stats.p(50), label: 'p50' }),
          brokerMetricOf('UpstreamLatency', { statistic: cloudwatch.Stats.p(99), label: 'p99' }),
        ],
        leftYAxis: { min: 0, label: 'ms', showUnits: false },
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'Errors by code',
        left: [
          new cloudwatch.MathExpression({
            expression: `SEARCH('{${metricsNamespace},ErrorCode,service} MetricName="Errors" service="${serviceName}"', 'Sum', ${alarmPeriod.toSeconds()})`,
            usingMetrics: {},
            period: alarmPeriod,
            // biome-ignore lint/suspicious/noTemplateCurlyInString: CloudWatch's dynamic label, one line per code.
            label: "${PROP('Dim.ErrorCode')}",
          }),
        ],
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'Broker events',
        left: [
          count('Invalidations'),
          count('SharedCacheErrors'),
          count('LeaseWaits'),
          count('StaleServed'),
          count('SecretReloads'),
          count('SecretFallbacks'),
          count('ForcedRefreshes'),
          count('Cooldowns'),
          count('CooldownSkips'),
          count('IssuanceBudgetExhausted'),
          count('TokenEndpointRefused'),
          brokerMetricOf('ColdStart', {
            label: 'ColdStart',
            dimensionsMap: { service: serviceName, function_name: fn.functionName },
          }),
        ],
        width: 8,
      }),
    );
    this.dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Function invocations, errors and throttles',
        left: [
          fnMetric('Invocations', cloudwatch.Stats.SUM, 'Invocations'),
          fnMetric('Errors', cloudwatch.Stats.SUM, 'Errors'),
          fnMetric('Throttles', cloudwatch.Stats.SUM, 'Throttles'),
        ],
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'Function duration',
        left: [
          fnMetric('Duration', cloudwatch.Stats.p(50), 'p50'),
          fnMetric('Duration', cloudwatch.Stats.p(99), 'p99'),
          fnMetric('Duration', cloudwatch.Stats.MAXIMUM, 'max'),
        ],
        leftYAxis: { min: 0, label: 'ms', showUnits: false },
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'Function concurrency',
        left: [fnMetric('ConcurrentExecutions', cloudwatch.Stats.MAXIMUM, 'ConcurrentExecutions (max)')],
        width: 8,
      }),
    );
    this.dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'API requests and errors',
        left: [
          apiMetric('Count', cloudwatch.Stats.SUM, 'Count'),
          apiMetric('4XXError', cloudwatch.Stats.SUM, '4XXError'),
          apiMetric('5XXError', cloudwatch.Stats.SUM, '5XXError'),
        ],
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'API latency',
        left: [
          apiMetric('Latency', cloudwatch.Stats.p(50), 'Latency p50'),
          apiMetric('Latency', cloudwatch.Stats.p(99), 'Latency p99'),
          apiMetric('IntegrationLatency', cloudwatch.Stats.p(99), 'IntegrationLatency p99'),
        ],
        leftYAxis: { min: 0, label: 'ms', showUnits: false },
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'Table throttles',
        left: [
          table.metric('ReadThrottleEvents', { statistic: cloudwatch.Stats.SUM, label: 'ReadThrottleEvents' }),
          table.metric('WriteThrottleEvents', { statistic: cloudwatch.Stats.SUM, label: 'WriteThrottleEvents' }),
        ],
        width: 8,
      }),
    );
  }
}
