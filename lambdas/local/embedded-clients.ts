/**
 * The registry of the local dev server on embedded defaults: the deployment's clients (cdk.json or
 * TOKEN_BROKER_CLIENTS), validated by the same parser as `cdk synth`, each registered at the embedded
 * OpenID provider with credentials generated at start, so a new client is tried without AWS.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { environmentVariables } from '../contract.js';
import { type ClientConfig, ConfigError, parseClientRegistryJson } from '../core/config.js';
import type { ClientCredentials } from '../core/ports.js';
import {
  contextKey,
  functionEnvironmentOf,
  parseTokenBrokerSettings,
  type TokenBrokerSettings,
} from '../core/settings.js';
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
 * The deployment the local server runs: cdk.json's `context.tokenBroker`, checked by the parser `cdk synth` and
 * the construct use (a key cdk.json repeats included), with the clients of TOKEN_BROKER_CLIENTS in cdk.json's
 * place when that is set. Throws one ConfigError naming every problem and where it was read.
 */
export function localDeployment(env: NodeJS.ProcessEnv, cdkJsonUrl: URL): TokenBrokerSettings {
  let text: string;
  let cdkJson: unknown;
  try {
    text = readFileSync(cdkJsonUrl, 'utf8');
    cdkJson = JSON.parse(text);
  } catch {
    throw new ConfigError(`cannot read ${cdkJsonUrl.pathname} as JSON`);
  }
  const raw = (cdkJson as { context?: Record<string, unknown> } | null)?.context?.[contextKey];
  const cdkJsonText = { json: text, path: ['context', contextKey] };
  const clientsJson = env[environmentVariables.clients];
  if (clientsJson === undefined || clientsJson === '') {
    return parseTokenBrokerSettings(raw, { source: 'cdk.json', text: cdkJsonText });
  }
  const clients = parseClientRegistryJson(clientsJson, environmentVariables.clients);
  // cdk.json's own clients, and the upgrade setting that names some of them, are not what runs here.
  const { clients: _replaced, legacyRootAliases: _legacy, ...settings } = (raw ?? {}) as Record<string, unknown>;
  return parseTokenBrokerSettings(settings, { source: 'cdk.json', text: cdkJsonText, clients });
}

/**
 * The runtime settings of the deployment, set as the stack sets them in the function's environment; a variable
 * set already (to try another value) wins.
 */
export function applyRuntimeSettings(env: NodeJS.ProcessEnv, settings: TokenBrokerSettings): void {
  for (const [variable, value] of Object.entries(functionEnvironmentOf(settings))) env[variable] ??= value;
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

/**
 * The RFC 8707 resource servers the embedded provider knows: every resource a client lists, accepting the
 * scopes of the clients that list it, so a client with `resources` is tried locally as it runs.
 */
export function embeddedResourceServers(clients: EmbeddedClient[]): Record<string, { scope: string }> {
  const scopes = new Map<string, Set<string>>();
  for (const { config } of clients) {
    for (const resource of config.resources ?? []) {
      const known = scopes.get(resource) ?? new Set<string>();
      for (const scope of config.scopes) known.add(scope);
      scopes.set(resource, known);
    }
  }
  return Object.fromEntries([...scopes].map(([resource, set]) => [resource, { scope: [...set].join(' ') }]));
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
      config.tokenEndpoint === undefined
        ? { ...config, wellKnownUrl, secretName: localSecretName(name), tokenEndpointHosts }
        : { ...config, tokenEndpoint: provider.tokenEndpoint, secretName: localSecretName(name) },
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
