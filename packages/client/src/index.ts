/**
 * The caller-side client of token-broker. See docs/client.md in the token-broker repository.
 *
 *   const broker = createTokenBrokerClient({ transport: { kind: 'http', baseUrl, region: 'us-east-1' } });
 *   const { accessToken } = await broker.getToken({ client: 'bwell', scope: 'system/*.read' });
 */
export {
  type BrokerToken,
  createTokenBrokerClient,
  defaultRefreshWindowSeconds,
  type GetTokenOptions,
  type TokenBrokerClient,
  type TokenBrokerClientOptions,
} from './client.js';
export {
  isBrokerErrorCode,
  isTokenBrokerError,
  TokenBrokerError,
  type TokenBrokerErrorCode,
  type TokenBrokerErrorOptions,
  transportErrorCode,
} from './errors.js';
export type { HttpTransportOptions, TokenBrokerCredentials } from './http-transport.js';
export type { LambdaTransportOptions } from './lambda-transport.js';
export { type BrokerErrorCode, brokerErrorCodes } from './protocol.js';
export { printable } from './text.js';
