/**
 * The construct library as an app outside this repository imports it (`@token-broker/cdk`). Its functions'
 * code ships pre-bundled in the package (handlers/), so the consumer's synth needs neither esbuild nor Docker.
 */

export type { ClientConfig, ClientRegistry } from '../../../lambdas/core/config.js';
export { type ContextOptions, parseTokenBrokerContext, type TokenBrokerContext } from '../../../lib/context.js';
export { type ThrottleSettings, TokenBroker, type TokenBrokerProps, tokenPath } from '../../../lib/token-broker.js';
export { TokenBrokerStack, type TokenBrokerStackProps } from '../../../lib/token-broker-stack.js';
