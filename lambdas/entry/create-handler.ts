import type { Logger } from '@aws-lambda-powertools/logger';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import type { APIGatewayProxyEvent, APIGatewayProxyResult, Context } from 'aws-lambda';
import type { TokenBroker, TokenResponse } from '../core/broker.js';
import { handleHttpEvent } from './http.js';
import { handleInvokeEvent } from './invoke.js';

export type BrokerAnswer = APIGatewayProxyResult | TokenResponse;

function isApiGatewayEvent(event: unknown): event is APIGatewayProxyEvent {
  return typeof event === 'object' && event !== null && 'httpMethod' in event && 'requestContext' in event;
}

/** One function serves both entry points; the event's shape says which one it came through. */
export function createHandler(broker: TokenBroker, logger: Logger) {
  return middy<unknown, BrokerAnswer, Error, Context>()
    .use(injectLambdaContext(logger, { resetKeys: true }))
    .handler(async (event, context) => {
      if (isApiGatewayEvent(event)) return handleHttpEvent(event, broker, logger);
      return handleInvokeEvent(event, context.invokedFunctionArn, broker, logger);
    });
}
