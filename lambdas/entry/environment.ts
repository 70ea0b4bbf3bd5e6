/** Environment variables through which the stack configures the function. */
export const environmentVariables = {
  tableName: 'TOKEN_BROKER_TABLE',
  clients: 'TOKEN_BROKER_CLIENTS',
  refreshWindowSeconds: 'TOKEN_BROKER_REFRESH_WINDOW_SECONDS',
  upstreamTimeoutMs: 'TOKEN_BROKER_UPSTREAM_TIMEOUT_MS',
} as const;
