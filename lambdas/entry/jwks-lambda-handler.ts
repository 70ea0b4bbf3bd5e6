import { Logger } from '@aws-lambda-powertools/logger';
import { KMSClient } from '@aws-sdk/client-kms';
import { KmsAssertionSigner } from '../adapters/kms-signer.js';
import { configErrorOf } from '../core/config.js';
import { readClientRegistry } from './client-registry.js';
import { defaultServiceName, serviceNameVariable } from './environment.js';
import { createJwksHandler } from './jwks.js';

const logger = new Logger({ serviceName: `${process.env[serviceNameVariable] || defaultServiceName}-jwks` });
const problems: string[] = [];
// The broker's own registry file (clients.json in this bundle too), read at cold start as the broker reads it.
const clients = readClientRegistry(process.env, { allowLoopbackHttp: false }, problems);
if (clients === undefined) throw configErrorOf(problems, 'the environment');
let kms: KMSClient | undefined;

export const handler = createJwksHandler({
  clients,
  // One signer per container: each key's public half is read once, with kms:GetPublicKey, and kept.
  signer: new KmsAssertionSigner(() => (kms ??= new KMSClient({}))),
  logger,
});
