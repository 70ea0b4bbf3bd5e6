/** Environment variables through which the stack configures the function. */
export const environmentVariables = {
  tableName: 'TOKEN_BROKER_TABLE',
  clients: 'TOKEN_BROKER_CLIENTS',
  refreshWindowSeconds: 'TOKEN_BROKER_REFRESH_WINDOW_SECONDS',
  upstreamBudgetMs: 'TOKEN_BROKER_UPSTREAM_BUDGET_MS',
  refreshAheadMaxSeconds: 'TOKEN_BROKER_REFRESH_AHEAD_MAX_SECONDS',
  secretMaxAgeSeconds: 'TOKEN_BROKER_SECRET_MAX_AGE_SECONDS',
} as const;
