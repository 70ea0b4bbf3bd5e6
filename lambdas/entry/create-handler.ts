import type { Logger } from '@aws-lambda-powertools/logger';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import type { Metrics } from '@aws-lambda-powertools/metrics';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import type { Tracer } from '@aws-lambda-powertools/tracer';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import middy from '@middy/core';
import type { APIGatewayProxyEvent, APIGatewayProxyResult, Context } from 'aws-lambda';
import type { TokenBroker, TokenResponse } from '../core/broker.js';
import { handleHttpEvent } from './http.js';
import { aliasOf, handleInvokeEvent, type InvalidationAnswer } from './invoke.js';

export type BrokerAnswer = APIGatewayProxyResult | TokenResponse | InvalidationAnswer;

export interface HandlerObservability {
  metrics?: Metrics;
  tracer?: Tracer;
}

function isApiGatewayEvent(event: unknown): event is APIGatewayProxyEvent {
  return typeof event === 'object' && event !== null && 'httpMethod' in event && 'requestContext' in event;
}

/** One function serves both entry points; the event's shape says which one it came through. */
export function createHandler(broker: TokenBroker, logger: Logger, observability: HandlerObservability = {}) {
  const sink = observability.metrics === undefined ? { logger } : { logger, metrics: observability.metrics };
  const handler = middy<unknown, BrokerAnswer, Error, Context>().use(injectLambdaContext(logger, { resetKeys: true }));
  if (observability.metrics !== undefined)
    handler.use(logMetrics(observability.metrics, { captureColdStartMetric: true }));
  // Responses are never put on traces: they hold tokens.
  if (observability.tracer !== undefined)
    handler.use(captureLambdaHandler(observability.tracer, { captureResponse: false }));
  return handler.handler(async (event, context) => {
    // API Gateway invokes the unqualified function; callers invoke aliases, and IAM grants them only those.
    // An event shaped like API Gateway's that arrives through an alias is a forgery, not an HTTP request.
    if (aliasOf(context.invokedFunctionArn) === undefined && isApiGatewayEvent(event)) {
      // API Gateway's request id ties a log line to the access log; a direct invocation has the Lambda request id.
      logger.setCorrelationId(event.requestContext?.requestId ?? context.awsRequestId);
      return handleHttpEvent(event, broker, sink);
    }
    logger.setCorrelationId(context.awsRequestId);
    return handleInvokeEvent(event, context.invokedFunctionArn, broker, sink);
  });
}
