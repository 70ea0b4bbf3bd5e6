/**
 * What the construct, the function, the local server and the tests must agree on, stated once: the routes and
 * aliases callers reach the function through, the limits of what they send, the error codes they get back, the
 * metrics the function emits, the cache-key format, and the runtime settings with their environment variables,
 * defaults and bounds. Each is imported from here; nothing restates it (test/unit/contract.test.ts looks).
 * This module imports nothing, so every layer (core included) may import it.
 * (packages/client is published on its own and keeps its own copy of the token route, checked by its tests.)
 */

// ---- Routes -------------------------------------------------------------------------------------------------

/** The token route: POST fetches a client's token, DELETE drops its cached tokens. `{client}` is the registry name. */
export const tokenPath = (clientName: string) => `/clients/${clientName}/token`;
/** The token route as API Gateway names the resource in its events (`event.resource`). */
export const tokenRoute = tokenPath('{client}');
/** The hosted JWKS route, below the JWKS function's URL. */
export const jwksPath = (clientName: string) => `/clients/${clientName}/jwks.json`;

// ---- Aliases ------------------------------------------------------------------------------------------------

/**
 * Client names never contain an underscore (config.ts's clientNamePattern), so an admin alias never collides
 * with a client alias, and only admin aliases end in this.
 */
export const adminAliasSuffix = '_admin';

/** The Lambda alias a client's direct invocations for tokens go through: the client's own name. */
export function clientAliasOf(clientName: string): string {
  return clientName;
}

/** The Lambda alias a client's invalidations by direct invoke go through, granted apart from its tokens. */
export function adminAliasOf(clientName: string): string {
  return `${clientName}${adminAliasSuffix}`;
}

/**
 * The alias API Gateway invokes: the only way in for an API Gateway event, whose caller identity the handler
 * trusts. It has an underscore, so it is no client's alias, and does not end in `_admin`, so no admin alias.
 */
export const apiGatewayAliasName = 'api_gateway';

// ---- Limits -------------------------------------------------------------------------------------------------

/** The longest `scope` a caller may send (the API's request schema and the broker both refuse longer). */
export const maxScopeLength = 1024;
/** The longest `audience` or `resource` a caller may send, and a registry may list. */
export const maxTargetLength = 1024;
/** The largest token request body the function reads over HTTP. */
export const maxRequestBodyBytes = 4096;
/**
 * The longest a token may live and the longest any lifetime setting may be: 31 days. A longer `expires_in` is
 * refused as implausible, so a longer default or window could only ever describe a token the broker refuses.
 */
export const maxLifetimeSeconds = 31 * 24 * 3600;

/**
 * The function's timeout as the stack sets it: a request that waits out a lease and then spends its whole
 * upstream budget must end within it (core/broker.ts's checkTimeBudget).
 */
export const functionTimeoutMs = 15_000;

// ---- Error codes --------------------------------------------------------------------------------------------

/**
 * Every error code a caller can get (the OAuth-style `error` of the body, and the errorType of a direct
 * invocation), and the HTTP status each answers with: the entry points never decide a status themselves.
 */
export const errorStatus = {
  invalid_request: 400,
  invalid_scope: 400,
  // RFC 8707 section 2: an audience or resource the client is not allowed.
  invalid_target: 400,
  access_denied: 403,
  unknown_client: 404,
  not_found: 404,
  method_not_allowed: 405,
  server_error: 500,
  upstream_error: 502,
  unavailable: 503,
  upstream_timeout: 504,
} as const;

export type ErrorCode = keyof typeof errorStatus;

// ---- Metrics ------------------------------------------------------------------------------------------------

/** The CloudWatch namespace of every metric the function emits and every alarm and widget reads. */
export const metricsNamespace = 'TokenBroker';

/**
 * Every metric name the function emits, by who emits it: the core and the token endpoint adapter count through
 * the `BrokerMetrics` port (`counter`), the audit and the metrics adapter emit the rest, Powertools emits
 * `ColdStart`. The alarms and the dashboard (lib/monitoring.ts) read only names of this table.
 */
export const metrics = {
  TokenEndpointCalls: { emittedBy: 'counter', description: 'a call to a token endpoint' },
  TokenEndpointFailures: { emittedBy: 'counter', description: 'a call to a token endpoint that failed' },
  SharedCacheErrors: { emittedBy: 'counter', description: 'the shared cache (the table) could not be used' },
  LeaseWaits: { emittedBy: 'counter', description: "a request waited on another container's lease" },
  StaleServed: {
    emittedBy: 'counter',
    description: 'a still-valid token served because its renewal failed or its cooldown stood',
  },
  SecretReloads: {
    emittedBy: 'counter',
    description: 'the provider refused the client and the re-read secret differed: retried with it',
  },
  SecretFallbacks: {
    emittedBy: 'counter',
    description: 'the provider refused the current secret and took the pending or previous one of a rotation',
  },
  ForcedRefreshes: {
    emittedBy: 'counter',
    description: "a caller's forceRefresh made the broker call the token endpoint (at most once per key per interval)",
  },
  Cooldowns: {
    emittedBy: 'counter',
    description: 'the token endpoint failed in a way that stops every container calling it for a while (cooldown.ts)',
  },
  CooldownSkips: {
    emittedBy: 'counter',
    description: "a renewal not attempted because the client's cooldown stood: served the current token, or a 503",
  },
  IssuanceBudgetExhausted: {
    emittedBy: 'counter',
    description: 'a token-endpoint call refused because the client made its maxTokenRequestsPerHour this hour',
  },
  TokenEndpointRefused: {
    emittedBy: 'counter',
    description: 'a token endpoint on a host not approved for the client: nothing was sent to it',
  },
  MemoryHits: { emittedBy: 'audit', description: "a token served from the container's memory" },
  TableHits: { emittedBy: 'audit', description: 'a token served from the table' },
  TokensFetched: {
    emittedBy: 'audit',
    description: 'an answer from the token endpoint for a key with no usable token',
  },
  TokensRefreshed: { emittedBy: 'audit', description: 'an answer from the token endpoint ahead of expiry' },
  StaleTokensServed: {
    emittedBy: 'audit',
    description: "an answer of a still-valid token whose renewal failed ('stale-served')",
  },
  Invalidations: { emittedBy: 'audit', description: "a client's cached tokens dropped" },
  Errors: { emittedBy: 'audit', description: 'a failed request, with the ErrorCode dimension' },
  UpstreamLatency: { emittedBy: 'adapter', description: 'milliseconds one token-endpoint call took, retries included' },
  IssuanceBudgetUsed: {
    emittedBy: 'adapter',
    description: 'the percent of its hourly issuance budget a client has used, with the call just counted',
  },
  ColdStart: { emittedBy: 'powertools', description: 'an invocation that started a container' },
} as const satisfies Record<string, { emittedBy: 'counter' | 'audit' | 'adapter' | 'powertools'; description: string }>;

/** Every metric name the function emits. */
export type MetricName = keyof typeof metrics;
/** The metrics counted through the core's BrokerMetrics port. */
export type CounterMetricName = {
  [Name in MetricName]: (typeof metrics)[Name]['emittedBy'] extends 'counter' ? Name : never;
}[MetricName];
export const metricNames = Object.keys(metrics) as MetricName[];

// ---- Cache keys ---------------------------------------------------------------------------------------------

/**
 * The one definition of a cache key: the client, its normalized scope set, and the parameters sent. Scope
 * tokens, audiences and resources never contain `"` (RFC 6749 section 3.3, and config.ts for the other two),
 * so the parts cannot run into each other; a key without parameters is what it was before they existed.
 */
export function cacheKeyOf(
  clientName: string,
  scopes: readonly string[],
  sent: { audience?: string; resource?: string } = {},
): string {
  const audience = sent.audience === undefined ? '' : `"audience=${sent.audience}`;
  const resource = sent.resource === undefined ? '' : `"resource=${sent.resource}`;
  return `${cacheKeyPrefixOf(clientName)}${scopes.join(' ')}${audience}${resource}`;
}

/** What every cache key of a client starts with, and no other client's does (client names contain no `#`). */
export function cacheKeyPrefixOf(clientName: string): string {
  return `${clientName}#`;
}

// ---- Runtime settings ---------------------------------------------------------------------------------------

export interface WholeNumberBounds {
  minimum: number;
  maximum: number;
  unit: 'seconds' | 'milliseconds' | 'requests';
}

/** A number the function reads at cold start, given in cdk.json's `tokenBroker` and as the construct's prop. */
export interface RuntimeSetting extends WholeNumberBounds {
  /** The variable through which the stack hands it to the function. */
  environmentVariable: string;
  /** What the function uses when the variable is unset or empty. */
  default: number;
  description: string;
}

/**
 * The broker's runtime settings, each under its name in cdk.json's `tokenBroker` and in the construct's props.
 * The settings parser, the construct, the local server and the function's cold start all check them against
 * these bounds (core/config.ts's wholeNumberProblem), with the same messages, and the stack sets each given
 * one in the function's environment (core/settings.ts's functionEnvironmentOf). Adding one here is all the
 * parsing and plumbing it needs; what remains is its use and its test.
 */
export const runtimeSettings = {
  refreshWindowSeconds: {
    environmentVariable: 'TOKEN_BROKER_REFRESH_WINDOW_SECONDS',
    default: 60,
    // A refresh window of 0 would hand out tokens with no lifetime left (`expires_in: 0`).
    minimum: 1,
    maximum: maxLifetimeSeconds,
    unit: 'seconds',
    description: 'A token is handed out only while at least this much of its lifetime remains.',
  },
  upstreamBudgetMs: {
    environmentVariable: 'TOKEN_BROKER_UPSTREAM_BUDGET_MS',
    default: 5_000,
    minimum: 1,
    // The function's timeout bounds it further (checkTimeBudget).
    maximum: 60_000,
    unit: 'milliseconds',
    description: 'Time for one whole token exchange (discovery, token request, retries, the invalid_client retry).',
  },
  refreshAheadMaxSeconds: {
    environmentVariable: 'TOKEN_BROKER_REFRESH_AHEAD_MAX_SECONDS',
    default: 300,
    minimum: 0,
    maximum: maxLifetimeSeconds,
    unit: 'seconds',
    description: "Renewal starts a fifth of a token's lifetime before expiry, at most this many seconds.",
  },
  secretMaxAgeSeconds: {
    environmentVariable: 'TOKEN_BROKER_SECRET_MAX_AGE_SECONDS',
    default: 300,
    minimum: 0,
    maximum: maxLifetimeSeconds,
    unit: 'seconds',
    description: 'How long the function reuses a client secret before reading it again.',
  },
} as const satisfies Record<string, RuntimeSetting>;

export type RuntimeSettingName = keyof typeof runtimeSettings;
/** The runtime settings in the order their problems are reported. */
export const runtimeSettingNames = Object.keys(runtimeSettings) as RuntimeSettingName[];
/** A value for each runtime setting, each optional: what cdk.json and the construct's props may carry. */
export type RuntimeSettingValues = { [Name in RuntimeSettingName]?: number };

// ---- Environment --------------------------------------------------------------------------------------------

type RuntimeSettingVariables = { [Name in RuntimeSettingName]: (typeof runtimeSettings)[Name]['environmentVariable'] };
const runtimeSettingVariables = Object.fromEntries(
  runtimeSettingNames.map((name) => [name, runtimeSettings[name].environmentVariable]),
) as RuntimeSettingVariables;

/** Environment variables through which the stack configures the function. */
export const environmentVariables = {
  tableName: 'TOKEN_BROKER_TABLE',
  clients: 'TOKEN_BROKER_CLIENTS',
  /**
   * The registry as a JSON file, read instead of TOKEN_BROKER_CLIENTS when set (the stack bundles it as
   * clients.json: Lambda's 4 KB of environment holds only about a dozen clients). A relative path resolves
   * against LAMBDA_TASK_ROOT, where Lambda unpacks the bundle, or the working directory outside Lambda.
   */
  clientsFile: 'TOKEN_BROKER_CLIENTS_FILE',
  ...runtimeSettingVariables,
  /** The Secrets Manager secret (ARN) holding the deployment's random key that cached tokens are sealed under. */
  sealingSecretArn: 'TOKEN_BROKER_SEALING_SECRET_ARN',
  /**
   * The deployment's approved token endpoint hosts (`tokenBroker.tokenEndpointHosts`), comma-separated; they
   * apply to clients without `tokenEndpointHosts` of their own, besides each client's issuer host.
   */
  tokenEndpointHosts: 'TOKEN_BROKER_TOKEN_ENDPOINT_HOSTS',
} as const;

/**
 * Powertools reads the service name from this variable; it is the `service` dimension of every metric the
 * function emits, so it must differ between deployments that share an account and region.
 */
export const serviceNameVariable = 'POWERTOOLS_SERVICE_NAME';
/** The service name (and metric dimension) of the default deployment, and the handler's fallback. */
export const defaultServiceName = 'token-broker';

/** The JWS algorithms the broker signs client assertions with. */
export const assertionAlgorithms = ['RS256', 'RS384', 'PS256', 'PS384', 'ES256', 'ES384'] as const;
export type AssertionAlgorithm = (typeof assertionAlgorithms)[number];
