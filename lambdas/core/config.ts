import { visit } from 'jsonc-parser';
import {
  type AssertionAlgorithm,
  assertionAlgorithms,
  maxLifetimeSeconds,
  maxTargetLength,
  type RuntimeSettingName,
  runtimeSettings,
  type WholeNumberBounds,
} from '../contract.js';
import { checkHostPatterns } from './endpoint-hosts.js';
import { maxTokenRequestsPerHourLimit } from './issuance-budget.js';
import { isScopeToken } from './scope.js';

export const authMethods = ['client_secret_post', 'client_secret_basic', 'private_key_jwt'] as const;
export type AuthMethod = (typeof authMethods)[number];

/** One OAuth client the broker holds credentials for, as declared in cdk.json `context.tokenBroker.clients`. */
export interface ClientConfig {
  /**
   * Where the provider's metadata is: OpenID (`…/.well-known/openid-configuration`), RFC 8414
   * (`/.well-known/oauth-authorization-server…`) or SMART (`<FHIR base>/.well-known/smart-configuration`).
   * Exactly one of this and `tokenEndpoint`.
   */
  wellKnownUrl?: string;
  /** For a provider that publishes no metadata: its token endpoint, fixed here instead of discovered. */
  tokenEndpoint?: string;
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
  /**
   * Values of the token request's `audience` parameter (Auth0's API identifier) callers may ask for. A caller
   * names one per request, or gets `defaultAudience`; without this list the parameter is never sent.
   */
  audiences?: string[];
  /** Sent when the caller names no audience; must be among `audiences`. */
  defaultAudience?: string;
  /**
   * RFC 8707 resource indicators (absolute URIs without a fragment) callers may ask for, one per request;
   * otherwise `defaultResource`. Without this list the `resource` parameter is never sent.
   */
  resources?: string[];
  /** Sent when the caller names no resource; must be among `resources`. */
  defaultResource?: string;
  /** Token-endpoint calls the whole fleet may make for this client per clock hour (issuance-budget.ts). */
  maxTokenRequestsPerHour?: number;
  /**
   * private_key_jwt with a KMS asymmetric key (SIGN_VERIFY; RSA, P-256 or P-384): assertions are signed with
   * `kms:Sign` and the private key never leaves KMS. The client's secret then holds only its `client_id`.
   */
  signingKeyArn?: string;
  /** The kid the provider knows the KMS key by. @default the RFC 7638 thumbprint of its public key */
  signingKeyId?: string;
  /** The JWS algorithm for the KMS key. @default RS384 for RSA, ES256 or ES384 by curve */
  signingAlgorithm?: AssertionAlgorithm;
  /**
   * More KMS keys whose public halves the hosted JWKS publishes beside `signingKeyArn`'s: the next key of a
   * rotation before the switch, the previous one until it is retired (docs/deploy.md, "Hosted JWKS").
   */
  jwksKeyArns?: string[];
  /** Public JWKs (each with its kid) the hosted JWKS publishes, for keys held in the client's secret. */
  jwks?: PublicJwk[];
  /**
   * Secretless private_key_jwt: each client assertion is a JWT that AWS STS signs for the function's own role
   * (`GetWebIdentityToken`, IAM outbound identity federation), with this `aud`. The provider trusts the account's
   * STS issuer for the role's ARN (Entra ID: a federated identity credential). No key or secret exists anywhere.
   */
  webIdentityAudience?: string;
  /** The algorithm STS signs that JWT with. @default RS256 */
  webIdentitySigningAlgorithm?: WebIdentitySigningAlgorithm;
}

/** The algorithms STS GetWebIdentityToken signs with. */
export const webIdentitySigningAlgorithms = ['RS256', 'ES384'] as const;
export type WebIdentitySigningAlgorithm = (typeof webIdentitySigningAlgorithms)[number];
/** What STS signs with when a client names no `webIdentitySigningAlgorithm`. */
export const defaultWebIdentitySigningAlgorithm: WebIdentitySigningAlgorithm = 'RS256';

/** A public key as a JWKS lists it: RSA or EC, with its kid, and none of a private key's members. */
export interface PublicJwk {
  kty: 'RSA' | 'EC';
  kid: string;
  [member: string]: unknown;
}

const privateJwkMembers = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];

function publicJwkProblem(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'must be a JWK object';
  const jwk = value as Record<string, unknown>;
  const leaked = privateJwkMembers.filter((member) => jwk[member] !== undefined);
  if (leaked.length > 0) return `holds private key members (${leaked.join(', ')}): publish only the public key`;
  if (jwk.kty !== 'RSA' && jwk.kty !== 'EC') return 'kty must be RSA or EC';
  if (typeof jwk.kid !== 'string' || jwk.kid === '') return 'needs a kid';
  const members = jwk.kty === 'RSA' ? ['n', 'e'] : ['crv', 'x', 'y'];
  const missing = members.filter((member) => typeof jwk[member] !== 'string');
  return missing.length === 0 ? undefined : `lacks ${missing.join(', ')}`;
}

export type ClientRegistry = Readonly<Record<string, ClientConfig>>;

export const clientNamePattern = /^[a-z0-9-]{1,64}$/;

/** Whether a caller's text is shaped like a client name, and so may be repeated in a log line or an error. */
export function isClientName(value: unknown): value is string {
  return typeof value === 'string' && clientNamePattern.test(value);
}

const knownFields = new Set([
  'wellKnownUrl',
  'tokenEndpoint',
  'secretName',
  'scopes',
  'defaultScope',
  'authMethod',
  'allowedPrincipals',
  'adminPrincipals',
  'secretKmsKeyArn',
  'defaultExpiresIn',
  'tokenEndpointHosts',
  'audiences',
  'defaultAudience',
  'resources',
  'defaultResource',
  'maxTokenRequestsPerHour',
  'signingKeyArn',
  'signingKeyId',
  'signingAlgorithm',
  'jwksKeyArns',
  'jwks',
  'webIdentityAudience',
  'webIdentitySigningAlgorithm',
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
const smartSuffix = '/.well-known/smart-configuration';

export class ConfigError extends Error {
  override name = 'ConfigError';
  /** Each problem on its own, named by its path: what a report that gathers several sources merges. */
  readonly problems: readonly string[];

  constructor(message: string, problems: readonly string[] = [message]) {
    super(message);
    this.problems = problems;
  }
}

const configHeader = 'invalid token broker configuration';

/** The one shape of a configuration error: a header naming where the settings were read, then every problem. */
export function configErrorOf(problems: readonly string[], source?: string): ConfigError {
  const header = source === undefined ? configHeader : `${configHeader} in ${source}`;
  return new ConfigError(`${header}:\n  ${problems.join('\n  ')}`, problems);
}

export interface ConfigOptions {
  /** Plain http discovery is accepted for loopback hosts only, and only by the local dev server. */
  allowLoopbackHttp?: boolean;
  /** The path the registry's problems are named under. @default 'tokenBroker.clients' (cdk.json's) */
  at?: string;
  /** Where the registry was read, for the error's header: `cdk.json`, `TOKEN_BROKER_CLIENTS`, a file. */
  source?: string;
}

// The lifetime limit and the runtime settings' bounds are the contract's; they are checked here.
export { maxLifetimeSeconds, type WholeNumberBounds } from '../contract.js';

/**
 * The bounds of the broker's runtime settings (the contract's table), which the construct, the CDK app, the
 * local server and the function's cold start all check with `wholeNumberProblem`.
 */
export const runtimeSettingBounds: { readonly [Name in RuntimeSettingName]: WholeNumberBounds } = runtimeSettings;

/** Why a value is not a whole number within its bounds, or undefined when it is. NaN, 1.5 and "60" are not. */
export function wholeNumberProblem(value: unknown, bounds: WholeNumberBounds): string | undefined {
  if (typeof value === 'number' && Number.isInteger(value) && value >= bounds.minimum && value <= bounds.maximum) {
    return undefined;
  }
  return `must be a whole number of ${bounds.unit} from ${bounds.minimum} to ${bounds.maximum}`;
}

// The six characters Secrets Manager appends to a secret's name in its ARN.
const secretArnSuffixPattern = /-[A-Za-z0-9]{6}$/;

/** The partition an ARN is in (`aws`, `aws-cn`, `aws-us-gov`, …). */
export function partitionOf(arn: string): string {
  return arn.split(':')[1] ?? '';
}

/** An ARN the configuration names, where it is named. */
export interface NamedArn {
  at: string;
  arn: string;
}

/** Every ARN a registry names: principals, secret ARNs and KMS keys. One deployment lives in one partition. */
export function arnsOfRegistry(registry: ClientRegistry, at = 'tokenBroker.clients'): NamedArn[] {
  return Object.entries(registry).flatMap(([name, client]) => [
    ...(client.secretName.startsWith('arn:') ? [{ at: `${at}.${name}.secretName`, arn: client.secretName }] : []),
    ...(client.secretKmsKeyArn === undefined
      ? []
      : [{ at: `${at}.${name}.secretKmsKeyArn`, arn: client.secretKmsKeyArn }]),
    ...(client.signingKeyArn === undefined ? [] : [{ at: `${at}.${name}.signingKeyArn`, arn: client.signingKeyArn }]),
    ...(client.jwksKeyArns ?? []).map((arn, index) => ({ at: `${at}.${name}.jwksKeyArns[${index}]`, arn })),
    ...(['allowedPrincipals', 'adminPrincipals'] as const).flatMap((field) =>
      (client[field] ?? []).map((arn, index) => ({ at: `${at}.${name}.${field}[${index}]`, arn })),
    ),
  ]);
}

/**
 * ARNs of more than one partition cannot all be right: a stack is in one partition, and IAM there refuses a
 * principal or resource of another. Each ARN outside the first one's partition is a problem.
 */
export function partitionProblems(arns: readonly NamedArn[]): string[] {
  const first = arns[0];
  if (first === undefined) return [];
  const partition = partitionOf(first.arn);
  return arns
    .filter(({ arn }) => partitionOf(arn) !== partition)
    .map(
      ({ at, arn }) =>
        `${at}: is in partition ${partitionOf(arn)}, but ${first.at} is in ${partition}: a deployment lives ` +
        'in one partition, and IAM there refuses the ARNs of another',
    );
}

export function isLoopbackHost(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname);
}

export type DiscoveryAlgorithm = 'oidc' | 'oauth2' | 'smart';

/**
 * The issuer a discovery document must name, derived from where it is fetched: OpenID Connect
 * appends its well-known suffix to the issuer, RFC 8414 inserts its prefix before the issuer's path. A SMART
 * configuration describes the FHIR server at its base URL and names no issuer to match (SMART App Launch 2,
 * section 2.1: its `issuer` is the OpenID issuer for user sign-in), so `issuer` is that base: the host whose
 * token endpoint is approved by default, as an issuer's is.
 */
export function discoveryLocation(wellKnownUrl: string): { issuer: URL; algorithm: DiscoveryAlgorithm } {
  const url = new URL(wellKnownUrl);
  if (url.pathname.endsWith(smartSuffix)) {
    const base = new URL(url.origin);
    base.pathname = url.pathname.slice(0, -smartSuffix.length) || '/';
    return { issuer: base, algorithm: 'smart' };
  }
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

/**
 * The host the client's token endpoint is approved on without a pin: its issuer's (or SMART base's), or, for a
 * fixed `tokenEndpoint`, that endpoint's own.
 */
export function providerHostOf(client: ClientConfig): string {
  if (client.tokenEndpoint !== undefined) return new URL(client.tokenEndpoint).host;
  return discoveryLocation(client.wellKnownUrl ?? '').issuer.host;
}

/** What identifies the client's provider: its metadata URL, or its fixed token endpoint. */
export function providerKeyOf(client: ClientConfig): string {
  return client.wellKnownUrl ?? client.tokenEndpoint ?? '';
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
    return `must end in ${oidcSuffix} or ${smartSuffix}, or start its path with ${oauthPrefix}`;
  }
  return undefined;
}

function checkTokenEndpoint(value: unknown, options: ConfigOptions): string | undefined {
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
  if (url.hash !== '') return 'must not have a fragment';
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

/** The longest audience or resource value the registry may list and a request may carry. */
export { maxTargetLength } from '../contract.js';

// Printable ASCII without space, '"' or '\\': never ambiguous inside the cache key (see cacheKeyOf).
const targetCharacters = /^[\x21\x23-\x5B\x5D-\x7E]+$/;

/** An `audience` value the registry may list and a caller may name. */
export function isAudience(value: unknown): value is string {
  return typeof value === 'string' && value.length <= maxTargetLength && targetCharacters.test(value);
}

/** A `resource` value (RFC 8707 section 2: an absolute URI, no fragment) the registry may list. */
export function isResourceIndicator(value: unknown): value is string {
  if (!isAudience(value)) return false;
  try {
    return new URL(value).hash === '' && !value.includes('#');
  } catch {
    return false;
  }
}

function checkTargetParameter(
  raw: Record<string, unknown>,
  listField: 'audiences' | 'resources',
  defaultField: 'defaultAudience' | 'defaultResource',
  valid: (value: unknown) => boolean,
  what: string,
  at: (field: string) => string,
  problems: string[],
): void {
  const list = raw[listField];
  if (list !== undefined) {
    if (!Array.isArray(list) || list.length === 0) {
      problems.push(`${at(listField)}: must be a non-empty array`);
    } else {
      list.forEach((value, index) => {
        if (!valid(value)) problems.push(`${at(`${listField}[${index}]`)}: must be ${what}`);
      });
      if (new Set(list).size !== list.length) problems.push(`${at(listField)}: must not repeat a value`);
    }
  }
  const fallback = raw[defaultField];
  if (fallback !== undefined && !(Array.isArray(list) && list.includes(fallback))) {
    problems.push(`${at(defaultField)}: must be one of ${listField}`);
  }
}

const requiredFields = ['secretName', 'scopes'] as const;

function checkClient(name: string, raw: unknown, options: ConfigOptions, problems: string[]): void {
  const client = `${options.at ?? defaultRegistryPath}.${name}`;
  const at = (field: string) => `${client}.${field}`;
  // A client name is also a Lambda alias name, which may not be all digits.
  if (!clientNamePattern.test(name) || /^\d+$/.test(name)) {
    problems.push(`${client}: client name must match ${clientNamePattern.source} and not be all digits`);
  }
  if (!isRecord(raw)) {
    problems.push(`${client}: must be an object`);
    return;
  }
  for (const field of Object.keys(raw)) {
    if (!knownFields.has(field)) problems.push(`${at(field)}: unknown field`);
  }
  for (const field of requiredFields) {
    if (raw[field] === undefined) problems.push(`${at(field)}: is required`);
  }
  if (raw.wellKnownUrl === undefined && raw.tokenEndpoint === undefined) {
    problems.push(`${at('wellKnownUrl')}: is required (or tokenEndpoint, for a provider without metadata)`);
  } else if (raw.wellKnownUrl !== undefined && raw.tokenEndpoint !== undefined) {
    problems.push(`${at('tokenEndpoint')}: not with wellKnownUrl: the token endpoint is discovered, or fixed here`);
  }
  const urlProblem = raw.wellKnownUrl === undefined ? undefined : checkWellKnownUrl(raw.wellKnownUrl, options);
  if (urlProblem) problems.push(`${at('wellKnownUrl')}: ${urlProblem}`);
  const endpointProblem = raw.tokenEndpoint === undefined ? undefined : checkTokenEndpoint(raw.tokenEndpoint, options);
  if (endpointProblem) problems.push(`${at('tokenEndpoint')}: ${endpointProblem}`);
  if (raw.tokenEndpoint !== undefined && raw.tokenEndpointHosts !== undefined) {
    problems.push(`${at('tokenEndpointHosts')}: not with tokenEndpoint, which is the one host the secret goes to`);
  }

  const secretName = raw.secretName;
  if (secretName !== undefined && (typeof secretName !== 'string' || !secretNamePattern.test(secretName))) {
    problems.push(`${at('secretName')}: must be a Secrets Manager secret name or ARN`);
  } else if (typeof secretName === 'string' && secretName.startsWith('arn:')) {
    const nameInArn = secretName.split(':').slice(6).join(':');
    if (!secretArnSuffixPattern.test(nameInArn)) {
      problems.push(
        `${at('secretName')}: the ARN ${secretName} lacks the six-character suffix Secrets Manager appends to ` +
          `the name (…:secret:${nameInArn}-AbCdEf). IAM would compare the ARN as written and never match the ` +
          "real one, so the function could not read the secret: use the secret's full ARN, or its name",
      );
    }
  }

  const scopes = raw.scopes;
  if (scopes !== undefined && (!Array.isArray(scopes) || scopes.length === 0)) {
    problems.push(`${at('scopes')}: must be a non-empty array of scope strings`);
  } else if (Array.isArray(scopes)) {
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

  if (raw.defaultExpiresIn !== undefined) {
    const problem = wholeNumberProblem(raw.defaultExpiresIn, {
      minimum: 1,
      maximum: maxLifetimeSeconds,
      unit: 'seconds',
    });
    if (problem !== undefined) problems.push(`${at('defaultExpiresIn')}: ${problem} (31 days)`);
  }

  if (raw.maxTokenRequestsPerHour !== undefined) {
    const problem = wholeNumberProblem(raw.maxTokenRequestsPerHour, {
      minimum: 1,
      maximum: maxTokenRequestsPerHourLimit,
      unit: 'requests',
    });
    if (problem !== undefined) problems.push(`${at('maxTokenRequestsPerHour')}: ${problem}`);
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

  checkTargetParameter(
    raw,
    'audiences',
    'defaultAudience',
    isAudience,
    'an audience: printable ASCII without spaces or quotes',
    at,
    problems,
  );
  checkTargetParameter(
    raw,
    'resources',
    'defaultResource',
    isResourceIndicator,
    'an absolute URI without a fragment (RFC 8707)',
    at,
    problems,
  );

  if (
    raw.secretKmsKeyArn !== undefined &&
    (typeof raw.secretKmsKeyArn !== 'string' || !kmsKeyArnPattern.test(raw.secretKmsKeyArn))
  ) {
    problems.push(
      `${at('secretKmsKeyArn')}: must be a KMS key ARN (arn:aws:kms:<region>:<account>:key/<key id>), not an alias`,
    );
  }

  if (raw.signingKeyArn !== undefined) {
    if (typeof raw.signingKeyArn !== 'string' || !kmsKeyArnPattern.test(raw.signingKeyArn)) {
      problems.push(
        `${at('signingKeyArn')}: must be a KMS key ARN (arn:aws:kms:<region>:<account>:key/<key id>), not an alias`,
      );
    }
    if (raw.authMethod !== 'private_key_jwt') problems.push(`${at('signingKeyArn')}: needs authMethod private_key_jwt`);
  }
  for (const field of ['signingKeyId', 'signingAlgorithm'] as const) {
    if (raw[field] !== undefined && raw.signingKeyArn === undefined) {
      problems.push(`${at(field)}: only with signingKeyArn`);
    }
  }
  if (
    raw.signingKeyId !== undefined &&
    (typeof raw.signingKeyId !== 'string' || !/^[\x21-\x7E]{1,256}$/.test(raw.signingKeyId))
  ) {
    problems.push(`${at('signingKeyId')}: must be 1 to 256 printable ASCII characters without spaces`);
  }
  if (
    raw.signingAlgorithm !== undefined &&
    !(assertionAlgorithms as readonly unknown[]).includes(raw.signingAlgorithm)
  ) {
    problems.push(`${at('signingAlgorithm')}: must be one of ${assertionAlgorithms.join(', ')}`);
  }
  if (raw.webIdentityAudience !== undefined) {
    // STS takes audiences of 1 to 1,000 characters; one, so that the assertion names exactly this provider.
    if (typeof raw.webIdentityAudience !== 'string' || !/^[\x21-\x7E]{1,1000}$/.test(raw.webIdentityAudience)) {
      problems.push(`${at('webIdentityAudience')}: must be 1 to 1000 printable ASCII characters without spaces`);
    }
    if (raw.authMethod !== 'private_key_jwt') {
      problems.push(`${at('webIdentityAudience')}: needs authMethod private_key_jwt`);
    }
    for (const other of ['signingKeyArn', 'jwksKeyArns', 'jwks'] as const) {
      if (raw[other] !== undefined) {
        problems.push(
          `${at(other)}: not with webIdentityAudience: STS signs this client's assertions, no key of its own`,
        );
      }
    }
  }
  if (raw.webIdentitySigningAlgorithm !== undefined) {
    if (raw.webIdentityAudience === undefined)
      problems.push(`${at('webIdentitySigningAlgorithm')}: only with webIdentityAudience`);
    if (!(webIdentitySigningAlgorithms as readonly unknown[]).includes(raw.webIdentitySigningAlgorithm)) {
      problems.push(`${at('webIdentitySigningAlgorithm')}: must be one of ${webIdentitySigningAlgorithms.join(', ')}`);
    }
  }
  for (const field of ['jwksKeyArns', 'jwks'] as const) {
    const list = raw[field];
    if (list === undefined) continue;
    if (raw.authMethod !== 'private_key_jwt') problems.push(`${at(field)}: needs authMethod private_key_jwt`);
    if (!Array.isArray(list)) {
      problems.push(`${at(field)}: must be an array`);
      continue;
    }
    list.forEach((item: unknown, index) => {
      const problem =
        field === 'jwks'
          ? publicJwkProblem(item)
          : typeof item === 'string' && kmsKeyArnPattern.test(item)
            ? undefined
            : 'must be a KMS key ARN (arn:aws:kms:<region>:<account>:key/<key id>), not an alias';
      if (problem !== undefined) problems.push(`${at(field)}[${index}]: ${problem}`);
    });
    if (field === 'jwks') {
      const kids = list.map((jwk: unknown) => (jwk as { kid?: unknown } | null)?.kid);
      const repeated = kids.filter((kid, index) => typeof kid === 'string' && kids.indexOf(kid) !== index);
      if (repeated.length > 0) problems.push(`${at(field)}: kid ${repeated.join(', ')} is listed twice`);
    }
  }
}

const defaultRegistryPath = 'tokenBroker.clients';

/**
 * Every problem of a registry, each named by client and field under `options.at`: the one check that
 * `cdk synth`, the construct, the local server and the function's cold start all run.
 */
export function clientRegistryProblems(raw: unknown, options: ConfigOptions = {}): string[] {
  const at = options.at ?? defaultRegistryPath;
  if (raw === undefined) return [`${at}: is required`];
  if (!isRecord(raw)) return [`${at}: must be an object keyed by client name`];
  const problems: string[] = [];
  const names = Object.keys(raw);
  if (names.length === 0) problems.push(`${at}: declares no client`);
  for (const name of names) checkClient(name, raw[name], options, problems);
  // One secret holds one OAuth client's credentials. A name and an ARN of the same secret need the stack's
  // account and region to be told apart; the construct checks those.
  const clientBySecret = new Map<string, string>();
  for (const name of names) {
    const secretName = (raw[name] as { secretName?: unknown } | undefined)?.secretName;
    if (typeof secretName !== 'string') continue;
    const identity = secretName.startsWith('arn:') ? secretIdentityOfArn(secretName) : `name:${secretName}`;
    const first = clientBySecret.get(identity);
    if (first === undefined) clientBySecret.set(identity, name);
    else problems.push(sharedSecretProblem(`${at}.${name}.secretName`, `${at}.${first}.secretName`));
  }
  return problems;
}

/** A secret ARN without its suffix: `<region>:<account>:<name>`, what a secret name resolves to in one place. */
export function secretIdentityOfArn(arn: string): string {
  const [, , , region, account, , ...rest] = arn.split(':');
  return `${region}:${account}:${rest.join(':').replace(secretArnSuffixPattern, '')}`;
}

export function sharedSecretProblem(at: string, firstAt: string): string {
  return (
    `${at}: the same secret as ${firstAt}. A secret holds one OAuth client: declare that client once with ` +
    'all its scopes, or give each its own secret'
  );
}

/** The registry as the broker reads it, once its problems are known to be none. */
export function registryOf(raw: Record<string, unknown>): ClientRegistry {
  const registry: Record<string, ClientConfig> = Object.create(null);
  for (const name of Object.keys(raw)) {
    const client = raw[name] as ClientConfig;
    registry[name] = {
      ...(client.wellKnownUrl === undefined ? {} : { wellKnownUrl: client.wellKnownUrl }),
      ...(client.tokenEndpoint === undefined ? {} : { tokenEndpoint: client.tokenEndpoint }),
      secretName: client.secretName,
      scopes: [...client.scopes],
      ...(client.defaultScope === undefined ? {} : { defaultScope: client.defaultScope }),
      ...(client.authMethod === undefined ? {} : { authMethod: client.authMethod }),
      ...(client.allowedPrincipals === undefined ? {} : { allowedPrincipals: [...client.allowedPrincipals] }),
      ...(client.adminPrincipals === undefined ? {} : { adminPrincipals: [...client.adminPrincipals] }),
      ...(client.secretKmsKeyArn === undefined ? {} : { secretKmsKeyArn: client.secretKmsKeyArn }),
      ...(client.defaultExpiresIn === undefined ? {} : { defaultExpiresIn: client.defaultExpiresIn }),
      ...(client.tokenEndpointHosts === undefined ? {} : { tokenEndpointHosts: [...client.tokenEndpointHosts] }),
      ...(client.audiences === undefined ? {} : { audiences: [...client.audiences] }),
      ...(client.defaultAudience === undefined ? {} : { defaultAudience: client.defaultAudience }),
      ...(client.resources === undefined ? {} : { resources: [...client.resources] }),
      ...(client.defaultResource === undefined ? {} : { defaultResource: client.defaultResource }),
      ...(client.maxTokenRequestsPerHour === undefined
        ? {}
        : { maxTokenRequestsPerHour: client.maxTokenRequestsPerHour }),
      ...(client.signingKeyArn === undefined ? {} : { signingKeyArn: client.signingKeyArn }),
      ...(client.signingKeyId === undefined ? {} : { signingKeyId: client.signingKeyId }),
      ...(client.signingAlgorithm === undefined ? {} : { signingAlgorithm: client.signingAlgorithm }),
      ...(client.jwksKeyArns === undefined ? {} : { jwksKeyArns: [...client.jwksKeyArns] }),
      ...(client.jwks === undefined ? {} : { jwks: client.jwks.map((jwk) => ({ ...jwk })) }),
      ...(client.webIdentityAudience === undefined ? {} : { webIdentityAudience: client.webIdentityAudience }),
      ...(client.webIdentitySigningAlgorithm === undefined
        ? {}
        : { webIdentitySigningAlgorithm: client.webIdentitySigningAlgorithm }),
    };
  }
  return Object.freeze(registry);
}

/**
 * Validates a registry on its own (TOKEN_BROKER_CLIENTS, the bundled clients.json, the construct's `clients`):
 * every problem at once, including ARNs of more than one partition.
 */
export function parseClientRegistry(raw: unknown, options: ConfigOptions = {}): ClientRegistry {
  const problems = clientRegistryProblems(raw, options);
  if (problems.length === 0) {
    const registry = registryOf(raw as Record<string, unknown>);
    problems.push(...partitionProblems(arnsOfRegistry(registry, options.at ?? defaultRegistryPath)));
    if (problems.length === 0) return registry;
  }
  throw configErrorOf(problems, options.source);
}

/**
 * Reads a registry from JSON text (an environment variable or a file), whose name `variable` is: it is the
 * source of the error, and the path every problem is named under. A key the JSON repeats is a problem too:
 * JSON.parse would silently keep the last.
 */
export function parseClientRegistryJson(
  json: string | undefined,
  variable: string,
  options: ConfigOptions = {},
): ClientRegistry {
  if (json === undefined || json === '') throw new ConfigError(`${variable} is not set`);
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch {
    throw new ConfigError(`${variable} is not valid JSON`);
  }
  const at = options.at ?? variable;
  const repeated = repeatedKeyProblems(json, [], at);
  try {
    const registry = parseClientRegistry(raw, { ...options, at, source: options.source ?? variable });
    if (repeated.length === 0) return registry;
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    throw configErrorOf([...repeated, ...error.problems], options.source ?? variable);
  }
  throw configErrorOf(repeated, options.source ?? variable);
}

/**
 * The keys that an object inside the JSON text at `path` (keys from the document's root) declares more than
 * once, each named as `at` followed by its path below `path`. Only valid JSON is given here.
 */
export function repeatedKeyProblems(json: string, path: readonly string[], at: string): string[] {
  const problems: string[] = [];
  const seen: Set<string>[] = [];
  visit(json, {
    onObjectBegin: () => {
      seen.push(new Set());
    },
    onObjectEnd: () => {
      seen.pop();
    },
    onObjectProperty: (property, _offset, _length, _line, _character, pathSupplier) => {
      const keys = seen.at(-1);
      if (keys === undefined) return;
      const full = [...pathSupplier(), property];
      if (keys.has(property) && full.length >= path.length && path.every((key, index) => full[index] === key)) {
        const below = full.slice(path.length).map((key) => (typeof key === 'number' ? `[${key}]` : `.${key}`));
        const where = `${at}${below.join('')}`;
        problems.push(`${where}: is declared more than once; JSON keeps only the last, so remove the others`);
      }
      keys.add(property);
    },
  });
  return problems;
}
