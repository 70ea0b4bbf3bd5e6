import type { Logger } from '@aws-lambda-powertools/logger';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import type { Metrics } from '@aws-lambda-powertools/metrics';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import type { Tracer } from '@aws-lambda-powertools/tracer';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import middy from '@middy/core';
import type { APIGatewayProxyEvent, APIGatewayProxyResult, Context } from 'aws-lambda';
import type { TokenBroker, TokenResponse } from '../core/broker.js';
import { BrokerError } from '../core/errors.js';
import { type AuditSink, logFailure } from './audit.js';
import { handleHttpEvent } from './http.js';
import { aliasOf, apiGatewayAliasName, handleInvokeEvent, type InvalidationAnswer } from './invoke.js';

export type BrokerAnswer = APIGatewayProxyResult | TokenResponse | InvalidationAnswer;

export interface HandlerObservability {
  metrics?: Metrics;
  tracer?: Tracer;
}

function isApiGatewayEvent(event: unknown): event is APIGatewayProxyEvent {
  return typeof event === 'object' && event !== null && 'httpMethod' in event && 'requestContext' in event;
}

/** One function serves both entry points; the alias it was invoked through says which one. */
export function createHandler(broker: TokenBroker, logger: Logger, observability: HandlerObservability = {}) {
  const sink = observability.metrics === undefined ? { logger } : { logger, metrics: observability.metrics };
  const handler = middy<unknown, BrokerAnswer, Error, Context>().use(injectLambdaContext(logger, { resetKeys: true }));
  if (observability.metrics !== undefined)
    handler.use(logMetrics(observability.metrics, { captureColdStartMetric: true }));
  // Responses are never put on traces: they hold tokens.
  if (observability.tracer !== undefined)
    handler.use(captureLambdaHandler(observability.tracer, { captureResponse: false }));
  return handler.handler(async (event, context) => {
    // The alias is the authorization: IAM grants API Gateway its own alias, and callers only the aliases of
    // the clients they were granted. The event's shape must match the alias, never choose the entry point:
    // anyone allowed to invoke could shape an event like API Gateway's and name any caller identity in it.
    const alias = aliasOf(context.invokedFunctionArn);
    const apiGatewayShaped = isApiGatewayEvent(event);
    if (alias === apiGatewayAliasName && apiGatewayShaped) {
      // API Gateway's request id ties a log line to the access log; a direct invocation has the Lambda request id.
      logger.setCorrelationId(event.requestContext?.requestId ?? context.awsRequestId);
      return handleHttpEvent(event, broker, sink);
    }
    logger.setCorrelationId(context.awsRequestId);
    if (alias === undefined) {
      refuse(sink, context.invokedFunctionArn, 'invoke the function through the alias named after the client');
    }
    if (alias === apiGatewayAliasName) {
      refuse(sink, context.invokedFunctionArn, `the alias ${apiGatewayAliasName} serves API Gateway requests only`);
    }
    if (apiGatewayShaped) {
      refuse(sink, context.invokedFunctionArn, `the alias ${alias} serves direct invocations only`);
    }
    return handleInvokeEvent(event, context.invokedFunctionArn, broker, sink);
  });
}

/** A refusal before the event is read: logged and counted like every other failure, then thrown as Lambda reports it. */
function refuse(sink: AuditSink, invokedAs: string, description: string): never {
  const error = new BrokerError('access_denied', description);
  logFailure(sink, { invokedAs, channel: 'invoke', client: undefined, error });
  throw error;
}
