import { Logger } from '@aws-lambda-powertools/logger';
import { createBrokerFromEnvironment } from './compose.js';
import { createHandler } from './create-handler.js';

export const logger = new Logger({ serviceName: 'token-broker' });

// Configuration is read at cold start: a bad registry fails the container's init, and Lambda reports
// the ConfigError, which names the client and the field, before anything is served.
export const handler = createHandler(createBrokerFromEnvironment(process.env, { logger }), logger);
