/**
 * The registry of the local dev server on embedded defaults: the deployment's clients (cdk.json or
 * TOKEN_BROKER_CLIENTS), validated by the same parser as `cdk synth`, each registered at the embedded
 * OpenID provider with credentials generated at start, so a new client is tried without AWS.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { type ClientConfig, ConfigError, parseClientRegistry, parseClientRegistryJson } from '../core/config.js';
import type { ClientCredentials } from '../core/ports.js';
import type { LocalOidcClient } from './oidc-server.js';

/** The quick start's client; the registry's own `demo`, if it declares one, takes its place. */
export const demoClientName = 'demo';
const demoClient: ClientConfig = {
  wellKnownUrl: 'https://demo.invalid/.well-known/openid-configuration',
  secretName: 'local/demo',
  scopes: ['demo.read', 'demo.write'],
  defaultScope: 'demo.read',
};

export interface EmbeddedClient {
  name: string;
  config: ClientConfig;
  credentials: ClientCredentials;
  /** How the embedded provider knows the client: the same id, method and scopes, and its secret or public key. */
  provider: LocalOidcClient;
}

/**
 * The registry the deployment would run: TOKEN_BROKER_CLIENTS when set, else cdk.json's
 * `context.tokenBroker.clients`. Throws ConfigError naming every problem, as `cdk synth` would.
 */
export function deploymentRegistry(clientsJson: string | undefined, cdkJsonUrl: URL): Record<string, ClientConfig> {
  if (clientsJson !== undefined && clientsJson !== '') {
    return { ...parseClientRegistryJson(clientsJson, 'TOKEN_BROKER_CLIENTS') };
  }
  let cdkJson: unknown;
  try {
    cdkJson = JSON.parse(readFileSync(cdkJsonUrl, 'utf8'));
  } catch {
    throw new ConfigError(`cannot read ${cdkJsonUrl.pathname} as JSON`);
  }
  const context = (cdkJson as { context?: { tokenBroker?: { clients?: unknown } } } | null)?.context;
  return { ...parseClientRegistry(context?.tokenBroker?.clients) };
}

/** Every client of the registry (plus `demo`) with fresh credentials: a secret, or a key pair for private_key_jwt. */
export function embeddedClients(registry: Record<string, ClientConfig>): EmbeddedClient[] {
  const all = { [demoClientName]: demoClient, ...registry };
  return Object.entries(all).map(([name, config]) => {
    const clientId = name;
    const scopes = [...config.scopes];
    if (config.authMethod === 'private_key_jwt') {
      const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-384' });
      const kid = randomBytes(8).toString('hex');
      return {
        name,
        config,
        credentials: { clientId, privateKeyJwk: { ...privateKey.export({ format: 'jwk' }), kid, alg: 'ES384' } },
        provider: {
          clientId,
          publicJwk: { ...publicKey.export({ format: 'jwk' }), kid, alg: 'ES384', use: 'sig' },
          authMethod: 'private_key_jwt',
          scopes,
        },
      };
    }
    const clientSecret = randomBytes(24).toString('base64url');
    // Without authMethod the broker uses client_secret_post, which the embedded provider's discovery lists.
    const authMethod = config.authMethod ?? 'client_secret_post';
    return {
      name,
      config,
      credentials: { clientId, clientSecret },
      provider: { clientId, clientSecret, authMethod, scopes },
    };
  });
}

/** The secret name each client's credentials are held under in the dev server's memory. */
export function localSecretName(clientName: string): string {
  return `local/${clientName}`;
}

/**
 * The registry pointed at the embedded provider and the in-memory secrets. The provider replaces each client's
 * real one, so its token endpoint host replaces each client's pin (the real provider's host would be refused).
 */
export function embeddedRegistry(
  clients: EmbeddedClient[],
  provider: { wellKnownUrl: string; tokenEndpoint: string },
): Record<string, ClientConfig> {
  const { wellKnownUrl } = provider;
  const tokenEndpointHosts = [new URL(provider.tokenEndpoint).host];
  return Object.fromEntries(
    clients.map(({ name, config }) => [
      name,
      { ...config, wellKnownUrl, secretName: localSecretName(name), tokenEndpointHosts },
    ]),
  );
}

/**
 * The generated credentials in the shape of the Secrets Manager secret values, for
 * TOKEN_BROKER_LOCAL_CREDENTIALS_FILE: to call the embedded provider directly, or to check logs for leaks.
 */
export function credentialsDocument(
  clients: EmbeddedClient[],
  wellKnownUrl: string,
): { wellKnownUrl: string; clients: Record<string, unknown> } {
  const secrets = Object.fromEntries(
    clients.map(({ name, credentials }) => [
      name,
      credentials.privateKeyJwk === undefined
        ? { client_id: credentials.clientId, client_secret: credentials.clientSecret }
        : { client_id: credentials.clientId, private_key_jwk: credentials.privateKeyJwk },
    ]),
  );
  return { wellKnownUrl, clients: secrets };
}
