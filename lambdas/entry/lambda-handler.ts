import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { Tracer } from '@aws-lambda-powertools/tracer';
import { PowertoolsBrokerMetrics } from '../adapters/observability.js';
import { metricsNamespace } from '../contract.js';
import { createBrokerFromEnvironment } from './compose.js';
import { createHandler } from './create-handler.js';
import { defaultServiceName, serviceNameVariable } from './environment.js';

// The stack sets it per deployment: it is the `service` dimension its alarms and dashboard read.
export const serviceName = process.env[serviceNameVariable] || defaultServiceName;
export const logger = new Logger({ serviceName });
export const metrics = new Metrics({ serviceName, namespace: metricsNamespace });
export const tracer = new Tracer({ serviceName, captureHTTPsRequests: false });

// Configuration is read at cold start: a bad registry fails the container's init, and Lambda reports
// the ConfigError, which names the client and the field, before anything is served.
export const handler = createHandler(
  createBrokerFromEnvironment(process.env, { logger, metrics: new PowertoolsBrokerMetrics(metrics), tracer }),
  logger,
  { metrics, tracer },
);
