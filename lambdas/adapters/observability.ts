import type { Logger } from '@aws-lambda-powertools/logger';
import { type Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type { Tracer } from '@aws-lambda-powertools/tracer';
import type { MetricName } from '../contract.js';
import type { BrokerMetric, BrokerMetrics } from '../core/ports.js';

/** The broker's counters as CloudWatch EMF metrics, flushed once per invocation by the logMetrics middleware. */
export class PowertoolsBrokerMetrics implements BrokerMetrics {
  constructor(private readonly metrics: Metrics) {}

  count(metric: BrokerMetric): void {
    this.metrics.addMetric(metric, MetricUnit.Count, 1);
  }

  upstreamLatency(ms: number): void {
    this.metrics.addMetric('UpstreamLatency' satisfies MetricName, MetricUnit.Milliseconds, ms);
  }

  /** One metric for every client (no client dimension): the alarm on its Maximum fires for whichever nears its ceiling. */
  issuanceBudgetUsed(percent: number): void {
    this.metrics.addMetric('IssuanceBudgetUsed' satisfies MetricName, MetricUnit.Percent, percent);
  }
}

/** Runs work inside an X-Ray subsegment when tracing is on; a no-op wrapper otherwise. */
export type Traced = <T>(name: string, work: () => Promise<T>) => Promise<T>;

export const untraced: Traced = (_name, work) => work();

export function tracedWith(tracer: Tracer): Traced {
  return async (name, work) => {
    const parent = tracer.isTracingEnabled() ? tracer.getSegment() : undefined;
    if (parent === undefined) return work();
    const subsegment = parent.addNewSubsegment(name);
    tracer.setSegment(subsegment);
    try {
      return await work();
    } catch (error) {
      // Only the flag: an upstream error's details can quote what the trace must not hold.
      subsegment.addErrorFlag();
      throw error;
    } finally {
      subsegment.close();
      tracer.setSegment(parent);
    }
  };
}

export interface Observability {
  logger: Logger;
  metrics: Metrics;
  tracer: Tracer;
}
