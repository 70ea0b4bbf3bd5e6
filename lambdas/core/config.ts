import { checkHostPatterns } from './endpoint-hosts.js';
import { isScopeToken } from './scope.js';

export const authMethods = ['client_secret_post', 'client_secret_basic', 'private_key_jwt'] as const;
export type AuthMethod = (typeof authMethods)[number];

/** One OAuth client the broker holds credentials for, as declared in cdk.json `context.tokenBroker.clients`. */
export interface ClientConfig {
  wellKnownUrl: string;
  secretName: string;
  scopes: string[];
  defaultScope?: string;
  authMethod?: AuthMethod;
  /**
   * IAM principals (role, user or account-root ARNs) granted this client at deploy time: over HTTP
   * (execute-api:Invoke on the client's token route) and by direct invoke (its Lambda alias).
   */
  allowedPrincipals?: string[];
  /**
   * IAM principals (role, user or account-root ARNs) granted this client's administration at deploy time:
   * DELETE on the client's token route (drops its cached tokens) and its admin alias `<client>_admin`.
   * Fetching a token never implies it, nor does this field imply fetching.
   */
  adminPrincipals?: string[];
  /** The customer managed KMS key that encrypts the client's secret; the function may decrypt with it. */
  secretKmsKeyArn?: string;
  /** Lifetime in seconds assumed when the server omits expires_in and the token is not a JWT with exp. */
  defaultExpiresIn?: number;
  /**
   * The hosts the discovery document may name the token endpoint on, each as a URL's host reads (a lowercase
   * DNS name, with `:port` when the port is not 443) or `*.` and one label's wildcard (see endpoint-hosts.ts).
   * Unset, the issuer's host and the deployment's `tokenBroker.tokenEndpointHosts` are approved.
   */
  tokenEndpointHosts?: string[];
}

export type ClientRegistry = Readonly<Record<string, ClientConfig>>;

export const clientNamePattern = /^[a-z0-9-]{1,64}$/;

/** Whether a caller's text is shaped like a client name, and so may be repeated in a log line or an error. */
export function isClientName(value: unknown): value is string {
  return typeof value === 'string' && clientNamePattern.test(value);
}

const knownFields = new Set([
  'wellKnownUrl',
  'secretName',
  'scopes',
  'defaultScope',
  'authMethod',
  'allowedPrincipals',
  'adminPrincipals',
  'secretKmsKeyArn',
  'defaultExpiresIn',
  'tokenEndpointHosts',
]);
// Secrets Manager accepts names of these characters, or a full secret ARN.
const secretNamePattern = /^(arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:)?[A-Za-z0-9/_+=.@-]{1,512}$/;
// IAM principals a grant may name: an account root, a role or a user (with an optional path). No wildcards.
const iamName = '[A-Za-z0-9+=,.@_-]';
export const principalArnPattern = new RegExp(
  `^arn:aws(-[a-z]+)*:iam::\\d{12}:(root|(role|user)/(${iamName}+/)*${iamName}{1,64})$`,
);
// A key ARN proper: key policies and IAM evaluate kms:Decrypt against the key, never against an alias.
export const kmsKeyArnPattern =
  /^arn:aws(-[a-z]+)*:kms:[a-z0-9-]+:\d{12}:key\/(mrk-[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/;
const oidcSuffix = '/.well-known/openid-configuration';
const oauthPrefix = '/.well-known/oauth-authorization-server';

export class ConfigError extends Error {
  override name = 'ConfigError';
}

export interface ConfigOptions {
  /** Plain http discovery is accepted for loopback hosts only, and only by the local dev server. */
  allowLoopbackHttp?: boolean;
}

export function isLoopbackHost(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname);
}

/**
 * The issuer a discovery document must name, derived from where it is fetched: OpenID Connect
 * appends its well-known suffix to the issuer, RFC 8414 inserts its prefix before the issuer's path.
 */
export function discoveryLocation(wellKnownUrl: string): { issuer: URL; algorithm: 'oidc' | 'oauth2' } {
  const url = new URL(wellKnownUrl);
  if (url.pathname.endsWith(oidcSuffix)) {
    const issuer = new URL(url.origin);
    issuer.pathname = url.pathname.slice(0, -oidcSuffix.length) || '/';
    return { issuer, algorithm: 'oidc' };
  }
  if (url.pathname === oauthPrefix || url.pathname.startsWith(`${oauthPrefix}/`)) {
    const issuer = new URL(url.origin);
    issuer.pathname = url.pathname.slice(oauthPrefix.length) || '/';
    return { issuer, algorithm: 'oauth2' };
  }
  throw new TypeError(`not a well-known discovery URL: ${wellKnownUrl}`);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function checkWellKnownUrl(value: unknown, options: ConfigOptions): string | undefined {
  if (typeof value !== 'string') return 'must be a string';
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return 'must be an absolute URL';
  }
  const loopbackHttp = options.allowLoopbackHttp === true && url.protocol === 'http:' && isLoopbackHost(url.hostname);
  if (url.protocol !== 'https:' && !loopbackHttp) return 'must be an https URL';
  if (url.username !== '' || url.password !== '') return 'must not carry credentials';
  if (url.search !== '' || url.hash !== '') return 'must not have a query or fragment';
  try {
    discoveryLocation(value);
  } catch {
    return `must end in ${oidcSuffix} or start its path with ${oauthPrefix}`;
  }
  return undefined;
}

function checkPrincipals(principals: unknown, field: string, at: (field: string) => string, problems: string[]): void {
  if (principals === undefined) return;
  if (!Array.isArray(principals) || principals.length === 0) {
    problems.push(`${at(field)}: must be a non-empty array of IAM principal ARNs`);
    return;
  }
  principals.forEach((principal, index) => {
    if (typeof principal !== 'string' || !principalArnPattern.test(principal)) {
      problems.push(
        `${at(`${field}[${index}]`)}: must be an IAM principal ARN without wildcards: ` +
          'arn:aws:iam::<account>:root, arn:aws:iam::<account>:role/<name> or arn:aws:iam::<account>:user/<name>',
      );
    }
  });
  if (new Set(principals).size !== principals.length) problems.push(`${at(field)}: must not repeat a principal`);
}

function checkClient(name: string, raw: unknown, options: ConfigOptions, problems: string[]): void {
  const at = (field: string) => `tokenBroker.clients.${name}.${field}`;
  // A client name is also a Lambda alias name, which may not be all digits.
  if (!clientNamePattern.test(name) || /^\d+$/.test(name)) {
    problems.push(
      `tokenBroker.clients.${name}: client name must match ${clientNamePattern.source} and not be all digits`,
    );
  }
  if (!isRecord(raw)) {
    problems.push(`tokenBroker.clients.${name}: must be an object`);
    return;
  }
  for (const field of Object.keys(raw)) {
    if (!knownFields.has(field)) problems.push(`${at(field)}: unknown field`);
  }
  const urlProblem = checkWellKnownUrl(raw.wellKnownUrl, options);
  if (urlProblem) problems.push(`${at('wellKnownUrl')}: ${urlProblem}`);

  if (typeof raw.secretName !== 'string' || !secretNamePattern.test(raw.secretName)) {
    problems.push(`${at('secretName')}: must be a Secrets Manager secret name or ARN`);
  }

  const scopes = raw.scopes;
  if (!Array.isArray(scopes) || scopes.length === 0) {
    problems.push(`${at('scopes')}: must be a non-empty array of scope strings`);
  } else {
    scopes.forEach((scope, index) => {
      if (typeof scope !== 'string' || !isScopeToken(scope)) {
        problems.push(`${at(`scopes[${index}]`)}: must be an OAuth scope token (printable ASCII, no spaces)`);
      }
    });
    if (new Set(scopes).size !== scopes.length) problems.push(`${at('scopes')}: must not repeat a scope`);
  }

  if (raw.defaultScope !== undefined) {
    const parts = typeof raw.defaultScope === 'string' ? raw.defaultScope.split(' ').filter(Boolean) : [];
    if (parts.length === 0) {
      problems.push(`${at('defaultScope')}: must be a non-empty space-delimited string`);
    } else if (Array.isArray(scopes)) {
      const missing = parts.filter((part) => !scopes.includes(part));
      if (missing.length > 0) problems.push(`${at('defaultScope')}: ${missing.join(' ')} is not in scopes`);
    }
  }

  if (
    raw.defaultExpiresIn !== undefined &&
    (typeof raw.defaultExpiresIn !== 'number' || !Number.isInteger(raw.defaultExpiresIn) || raw.defaultExpiresIn <= 0)
  ) {
    problems.push(`${at('defaultExpiresIn')}: must be a positive whole number of seconds`);
  }

  if (raw.authMethod !== undefined && !authMethods.includes(raw.authMethod as AuthMethod)) {
    problems.push(`${at('authMethod')}: must be one of ${authMethods.join(', ')}`);
  }

  // allowedPrincipals get the client's fetch grants, adminPrincipals its invalidation grants.
  for (const field of ['allowedPrincipals', 'adminPrincipals'] as const) {
    checkPrincipals(raw[field], field, at, problems);
  }

  if (raw.tokenEndpointHosts !== undefined)
    checkHostPatterns(raw.tokenEndpointHosts, at('tokenEndpointHosts'), problems);

  if (
    raw.secretKmsKeyArn !== undefined &&
    (typeof raw.secretKmsKeyArn !== 'string' || !kmsKeyArnPattern.test(raw.secretKmsKeyArn))
  ) {
    problems.push(
      `${at('secretKmsKeyArn')}: must be a KMS key ARN (arn:aws:kms:<region>:<account>:key/<key id>), not an alias`,
    );
  }
}

/**
 * Validates the client registry. Used by `cdk synth` and by the Lambda's cold start, so a bad
 * registry fails early in both places with every problem named by client and field.
 */
export function parseClientRegistry(raw: unknown, options: ConfigOptions = {}): ClientRegistry {
  if (!isRecord(raw)) throw new ConfigError('tokenBroker.clients: must be an object keyed by client name');
  const problems: string[] = [];
  const names = Object.keys(raw);
  if (names.length === 0) problems.push('tokenBroker.clients: declares no client');
  for (const name of names) checkClient(name, raw[name], options, problems);
  if (problems.length > 0) throw new ConfigError(`invalid token broker configuration:\n  ${problems.join('\n  ')}`);

  const registry: Record<string, ClientConfig> = Object.create(null);
  for (const name of names) {
    const client = raw[name] as ClientConfig;
    registry[name] = {
      wellKnownUrl: client.wellKnownUrl,
      secretName: client.secretName,
      scopes: [...client.scopes],
      ...(client.defaultScope === undefined ? {} : { defaultScope: client.defaultScope }),
      ...(client.authMethod === undefined ? {} : { authMethod: client.authMethod }),
      ...(client.allowedPrincipals === undefined ? {} : { allowedPrincipals: [...client.allowedPrincipals] }),
      ...(client.adminPrincipals === undefined ? {} : { adminPrincipals: [...client.adminPrincipals] }),
      ...(client.secretKmsKeyArn === undefined ? {} : { secretKmsKeyArn: client.secretKmsKeyArn }),
      ...(client.defaultExpiresIn === undefined ? {} : { defaultExpiresIn: client.defaultExpiresIn }),
      ...(client.tokenEndpointHosts === undefined ? {} : { tokenEndpointHosts: [...client.tokenEndpointHosts] }),
    };
  }
  return Object.freeze(registry);
}

/** Reads the registry the stack hands to the function as JSON in an environment variable. */
export function parseClientRegistryJson(
  json: string | undefined,
  variable: string,
  options?: ConfigOptions,
): ClientRegistry {
  if (json === undefined || json === '') throw new ConfigError(`${variable} is not set`);
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch {
    throw new ConfigError(`${variable} is not valid JSON`);
  }
  return parseClientRegistry(raw, options);
}
