import type * as logs from 'aws-cdk-lib/aws-logs';
import type * as sns from 'aws-cdk-lib/aws-sns';
import type { ClientRegistry } from '../lambdas/core/config.js';

/**
 * The API's one stage unless `stageName` says otherwise. Always a literal (never a token), because the API's
 * resource policy names it and cannot reference the stage.
 */
export const defaultStageName = 'v1';

export interface ThrottleSettings {
  /** Steady-state requests per second across the stage. */
  readonly rateLimit: number;
  /** Burst bucket size. */
  readonly burstLimit: number;
}

export interface TokenBrokerProps {
  /** The client registry (`context.tokenBroker.clients`); validated again here, errors name client and field. */
  readonly clients: ClientRegistry;
  /**
   * The fence around the API: principals of any other account are denied over HTTP. Without this and
   * without `allowedOrgId`, the deploying account. With it, it replaces the deploying account: list that
   * one too if callers there use HTTP. It admits nobody by itself: a caller of another account must be
   * granted a client (`allowedPrincipals`, `adminPrincipals`, or a grant method with its ARN).
   */
  readonly allowedAccounts?: string[];
  /** An AWS Organizations id: its member accounts are inside the fence too. It admits nobody by itself either. */
  readonly allowedOrgId?: string;
  /** execute-api interface VPC endpoint ids: the API becomes PRIVATE and only these endpoints reach it. */
  readonly vpcEndpointIds?: string[];
  /** Overrides the broker's default refresh window, in seconds. */
  readonly refreshWindowSeconds?: number;
  /** Stage throttling. @default 50 requests/s, burst 100 */
  readonly throttle?: ThrottleSettings;
  /** The API's stage: the first segment of every route and of every execute-api grant. @default 'v1' */
  readonly stageName?: string;
  /**
   * Time for one whole token exchange (discovery, token request, retries), in milliseconds. Synth fails when
   * a request that waits out a lease and then spends this budget could outlive the function's timeout.
   * @default 5000 (the function's own default)
   */
  readonly upstreamBudgetMs?: number;
  /** Renewal starts a fifth of a token's lifetime before expiry, at most this many seconds. @default 300 */
  readonly refreshAheadMaxSeconds?: number;
  /** How long a container reuses a client secret before reading it again, in seconds. @default 300 */
  readonly secretMaxAgeSeconds?: number;
  /**
   * The function's Powertools service name (POWERTOOLS_SERVICE_NAME): the `service` dimension of its metrics,
   * which the alarms and the dashboard read. Give each broker in one account and region its own, or their
   * alarms watch each other's metrics. @default 'token-broker'
   */
  readonly serviceName?: string;
  /**
   * Roles or users of the deploying account that may invalidate the cached tokens of every client, present and
   * future: the platform team's. One identity policy each, naming the DELETE route of every client and every
   * admin alias by wildcard, so it stays the same size however many clients there are. Admins of other
   * accounts are listed under each client's `adminPrincipals`.
   */
  readonly adminPrincipals?: string[];
  /**
   * Hosts (exact, or `*.` and one label's wildcard) any client's token endpoint may be on besides its issuer's
   * host, for clients without `tokenEndpointHosts` of their own; another host gets nothing. @default none
   */
  readonly tokenEndpointHosts?: string[];
  /** Retention of the function's logs and the API's access logs. @default one month */
  readonly logRetention?: logs.RetentionDays;
  /**
   * A CloudTrail trail of the function's Invoke events (see `InvokeAuditTrail`): the only record of who invoked
   * it directly. Turn it off only where another trail already records this function's Lambda data events.
   * @default true
   */
  readonly auditTrail?: boolean;
  /** Gets the ALARM and OK notifications of every alarm the construct creates. @default no actions */
  readonly alarmTopic?: sns.ITopic;
  /**
   * Clients deployed before the per-client aliases moved into nested stacks (a8b4b77): their aliases stay in
   * this construct's stack under their old logical ids, and their config principals keep the resource-policy
   * grants that layout gave them. Moving such an alias into a nested stack would create an alias of the same
   * name before deleting the old one, which Lambda refuses, failing the update (docs/deploy.md, "Upgrade").
   * List every client of a deployment made before that commit, once; clients added later need not be listed.
   */
  readonly legacyRootAliases?: string[];
}
