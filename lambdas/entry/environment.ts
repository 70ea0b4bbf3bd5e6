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
  refreshWindowSeconds: 'TOKEN_BROKER_REFRESH_WINDOW_SECONDS',
  upstreamBudgetMs: 'TOKEN_BROKER_UPSTREAM_BUDGET_MS',
  refreshAheadMaxSeconds: 'TOKEN_BROKER_REFRESH_AHEAD_MAX_SECONDS',
  secretMaxAgeSeconds: 'TOKEN_BROKER_SECRET_MAX_AGE_SECONDS',
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
