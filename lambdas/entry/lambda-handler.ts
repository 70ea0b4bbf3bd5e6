import { Logger } from '@aws-lambda-powertools/logger';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import type { APIGatewayProxyEvent, APIGatewayProxyResult, Context } from 'aws-lambda';
import type { TokenBroker, TokenResponse } from '../core/broker.js';
import type { BrokerLogger } from '../core/ports.js';
import { createBrokerFromEnvironment } from './compose.js';
import { handleHttpEvent } from './http.js';
import { handleInvokeEvent } from './invoke.js';

export type BrokerEvent = APIGatewayProxyEvent | { client: string; scope?: string };
export type BrokerAnswer = APIGatewayProxyResult | TokenResponse;

function isApiGatewayEvent(event: unknown): event is APIGatewayProxyEvent {
  return typeof event === 'object' && event !== null && 'httpMethod' in event && 'requestContext' in event;
}

/** One function serves both entry points; the event's shape says which one it came through. */
export function createHandler(broker: TokenBroker, logger: Logger) {
  const brokerLogger: BrokerLogger = logger;
  return middy<unknown, BrokerAnswer, Error, Context>()
    .use(injectLambdaContext(logger, { resetKeys: true }))
    .handler(async (event, context) => {
      if (isApiGatewayEvent(event)) return handleHttpEvent(event, broker, brokerLogger);
      return handleInvokeEvent(event, context.invokedFunctionArn, broker, brokerLogger);
    });
}

export const logger = new Logger({ serviceName: 'token-broker' });

// Configuration is read at cold start: a bad registry fails the container's init, and Lambda reports
// the ConfigError, which names the client and the field, before anything is served.
export const handler = createHandler(createBrokerFromEnvironment(process.env, { logger }), logger);
