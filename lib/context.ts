import {
  type ClientRegistry,
  ConfigError,
  clientNamePattern,
  parseClientRegistry,
  principalArnPattern,
} from '../lambdas/core/config.js';
import { checkHostPatterns } from '../lambdas/core/endpoint-hosts.js';

/** The key under which `cdk.json` (or `cdk synth -c`) carries the broker's deployment settings. */
export const contextKey = 'tokenBroker';

/** The validated `tokenBroker` context: what the app hands to the stack. */
export interface TokenBrokerContext {
  clients: ClientRegistry;
  /** 12-digit account ids whose principals may call the API; without it (and without an org), the deploying account. */
  allowedAccounts?: string[];
  /** An AWS Organizations id (o-…) whose accounts may call the API. */
  allowedOrgId?: string;
  /** Interface VPC endpoint ids (execute-api): the API becomes PRIVATE and admits only these endpoints. */
  vpcEndpointIds?: string[];
  /** Overrides the broker's refresh window (seconds before expiry at which a cached token is renewed). */
  refreshWindowSeconds?: number;
  /** A standard SNS topic, in the stack's region, that gets every alarm's ALARM and OK notifications. */
  alarmTopicArn?: string;
  /** The CloudFormation stack name; distinct names let several deployments share an account. @default TokenBroker */
  stackName?: string;
  /** The API's stage, the first segment of every route. @default v1 */
  stage?: string;
  /** Stage throttling across all clients. @default 50 requests/s, burst 100 */
  throttle?: { rateLimit: number; burstLimit: number };
  /** Time for one whole token exchange (discovery, token request, retries), in milliseconds. @default 5000 */
  upstreamBudgetMs?: number;
  /** Renewal starts a fifth of a token's lifetime before expiry, at most this many seconds. @default 300 */
  refreshAheadMaxSeconds?: number;
  /** How long the function reuses a client secret before reading it again. @default 300 */
  secretMaxAgeSeconds?: number;
  /** Roles or users of the deploying account that may invalidate every client's cached tokens, present and future. */
  adminPrincipals?: string[];
  /** A CloudTrail trail of the function's Invoke events, the record of who invoked it directly. @default true */
  auditTrail?: boolean;
  /**
   * Clients whose aliases a deployment from before the nested-stack layout created in the root stack: they stay
   * there, under the same logical ids and grants, so that the upgrade neither recreates nor renames them.
   */
  legacyRootAliases?: string[];
  /**
   * Hosts (or `*.` one-label patterns) any client's token endpoint may be on besides its issuer's host, for
   * clients without `tokenEndpointHosts` of their own: the platform team's approval, listed once.
   */
  tokenEndpointHosts?: string[];
}

const knownFields = new Set([
  'clients',
  'allowedAccounts',
  'allowedOrgId',
  'vpcEndpointIds',
  'refreshWindowSeconds',
  'alarmTopicArn',
  'stackName',
  'stage',
  'throttle',
  'upstreamBudgetMs',
  'refreshAheadMaxSeconds',
  'secretMaxAgeSeconds',
  'adminPrincipals',
  'auditTrail',
  'legacyRootAliases',
  'tokenEndpointHosts',
]);
export const accountIdPattern = /^\d{12}$/;
export const orgIdPattern = /^o-[a-z0-9]{10,32}$/;
export const vpcEndpointIdPattern = /^vpce-[0-9a-f]{8,17}$/;
// A standard topic: CloudWatch alarm actions cannot publish to a FIFO topic.
// CloudFormation's rule for stack names.
export const stackNamePattern = /^[A-Za-z][A-Za-z0-9-]{0,127}$/;
// API Gateway stage names: letters, digits, hyphens and underscores.
export const stageNamePattern = /^[A-Za-z0-9_-]{1,128}$/;
export const snsTopicArnPattern = /^arn:aws(-[a-z]+)*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$/;
const header = 'invalid token broker configuration:';

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function stringList(
  raw: Record<string, unknown>,
  field: string,
  pattern: RegExp,
  what: string,
  problems: string[],
): string[] | undefined {
  const value = raw[field];
  if (value === undefined) return undefined;
  const at = `${contextKey}.${field}`;
  if (!Array.isArray(value) || value.length === 0) {
    problems.push(`${at}: must be a non-empty array of ${what}s`);
    return undefined;
  }
  const bad = value.flatMap((item, index) =>
    typeof item === 'string' && pattern.test(item) ? [] : [`${at}[${index}]: must be ${what} (${pattern.source})`],
  );
  problems.push(...bad);
  if (new Set(value).size !== value.length) problems.push(`${at}: must not repeat an entry`);
  return bad.length === 0 ? [...(value as string[])] : undefined;
}

/**
 * Validates the whole `tokenBroker` context at synth. Every problem is reported at once, each named by
 * its path (`tokenBroker.allowedAccounts[1]`, `tokenBroker.clients.bwell.secretName`, ...).
 * A string is accepted as JSON, for `cdk synth -c tokenBroker='{...}'`.
 */
export function parseTokenBrokerContext(input: unknown): TokenBrokerContext {
  let raw = input;
  if (typeof raw === 'string') {
    try {
      raw = JSON.parse(raw);
    } catch {
      throw new ConfigError(`${contextKey}: is not valid JSON`);
    }
  }
  if (raw === undefined) throw new ConfigError(`${contextKey}: missing from the CDK context (cdk.json "context")`);
  if (!isRecord(raw)) throw new ConfigError(`${contextKey}: must be an object`);

  const problems: string[] = [];
  for (const field of Object.keys(raw)) {
    if (!knownFields.has(field)) problems.push(`${contextKey}.${field}: unknown field`);
  }
  const allowedAccounts = stringList(raw, 'allowedAccounts', accountIdPattern, 'a 12-digit AWS account id', problems);
  const vpcEndpointIds = stringList(raw, 'vpcEndpointIds', vpcEndpointIdPattern, 'a VPC endpoint id', problems);

  const allowedOrgId = raw.allowedOrgId;
  if (allowedOrgId !== undefined && (typeof allowedOrgId !== 'string' || !orgIdPattern.test(allowedOrgId))) {
    problems.push(`${contextKey}.allowedOrgId: must be an AWS Organizations id (${orgIdPattern.source})`);
  }
  const window = raw.refreshWindowSeconds;
  if (window !== undefined && (typeof window !== 'number' || !Number.isInteger(window) || window < 0)) {
    problems.push(`${contextKey}.refreshWindowSeconds: must be a non-negative whole number of seconds`);
  }
  const alarmTopicArn = raw.alarmTopicArn;
  if (alarmTopicArn !== undefined && (typeof alarmTopicArn !== 'string' || !snsTopicArnPattern.test(alarmTopicArn))) {
    problems.push(`${contextKey}.alarmTopicArn: must be the ARN of a standard (not FIFO) SNS topic`);
  }

  const stackName = namedBy(raw, 'stackName', stackNamePattern, 'a CloudFormation stack name', problems);
  const stage = namedBy(raw, 'stage', stageNamePattern, 'an API Gateway stage name', problems);
  const throttle = throttleOf(raw.throttle, problems);
  const upstreamBudgetMs = wholeNumberOf(raw, 'upstreamBudgetMs', 1, problems);
  const refreshAheadMaxSeconds = wholeNumberOf(raw, 'refreshAheadMaxSeconds', 0, problems);
  const secretMaxAgeSeconds = wholeNumberOf(raw, 'secretMaxAgeSeconds', 0, problems);
  const adminPrincipals = stringList(raw, 'adminPrincipals', principalArnPattern, 'an IAM principal ARN', problems);
  const legacyRootAliases = stringList(raw, 'legacyRootAliases', clientNamePattern, 'a client name', problems);
  const auditTrail = raw.auditTrail;
  if (auditTrail !== undefined && typeof auditTrail !== 'boolean') {
    problems.push(`${contextKey}.auditTrail: must be true or false`);
  }
  const hostProblems = problems.length;
  if (raw.tokenEndpointHosts !== undefined) {
    checkHostPatterns(raw.tokenEndpointHosts, `${contextKey}.tokenEndpointHosts`, problems);
  }
  const tokenEndpointHosts =
    raw.tokenEndpointHosts !== undefined && problems.length === hostProblems
      ? [...(raw.tokenEndpointHosts as string[])]
      : undefined;

  let clients: ClientRegistry | undefined;
  try {
    clients = parseClientRegistry(raw.clients);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    // parseClientRegistry lists its problems under the same header: fold them into this report.
    const lines = error.message.split('\n').map((line) => line.trim());
    problems.push(...(lines[0] === header ? lines.slice(1) : lines));
  }
  if (problems.length > 0 || clients === undefined) throw new ConfigError(`${header}\n  ${problems.join('\n  ')}`);

  return {
    clients,
    ...(allowedAccounts === undefined ? {} : { allowedAccounts }),
    ...(typeof allowedOrgId === 'string' ? { allowedOrgId } : {}),
    ...(vpcEndpointIds === undefined ? {} : { vpcEndpointIds }),
    ...(typeof window === 'number' ? { refreshWindowSeconds: window } : {}),
    ...(typeof alarmTopicArn === 'string' ? { alarmTopicArn } : {}),
    ...(stackName === undefined ? {} : { stackName }),
    ...(stage === undefined ? {} : { stage }),
    ...(throttle === undefined ? {} : { throttle }),
    ...(upstreamBudgetMs === undefined ? {} : { upstreamBudgetMs }),
    ...(refreshAheadMaxSeconds === undefined ? {} : { refreshAheadMaxSeconds }),
    ...(secretMaxAgeSeconds === undefined ? {} : { secretMaxAgeSeconds }),
    ...(adminPrincipals === undefined ? {} : { adminPrincipals }),
    ...(typeof auditTrail === 'boolean' ? { auditTrail } : {}),
    ...(legacyRootAliases === undefined ? {} : { legacyRootAliases }),
    ...(tokenEndpointHosts === undefined ? {} : { tokenEndpointHosts }),
  };
}

function namedBy(
  raw: Record<string, unknown>,
  field: string,
  pattern: RegExp,
  what: string,
  problems: string[],
): string | undefined {
  const value = raw[field];
  if (value === undefined) return undefined;
  if (typeof value === 'string' && pattern.test(value)) return value;
  problems.push(`${contextKey}.${field}: must be ${what} (${pattern.source})`);
  return undefined;
}

function wholeNumberOf(
  raw: Record<string, unknown>,
  field: string,
  minimum: number,
  problems: string[],
): number | undefined {
  const value = raw[field];
  if (value === undefined) return undefined;
  if (typeof value === 'number' && Number.isInteger(value) && value >= minimum) return value;
  problems.push(`${contextKey}.${field}: must be a whole number of at least ${minimum}`);
  return undefined;
}

function throttleOf(value: unknown, problems: string[]): TokenBrokerContext['throttle'] {
  if (value === undefined) return undefined;
  const at = `${contextKey}.throttle`;
  if (!isRecord(value)) {
    problems.push(`${at}: must be an object {"rateLimit", "burstLimit"}`);
    return undefined;
  }
  const before = problems.length;
  for (const field of Object.keys(value)) {
    if (field !== 'rateLimit' && field !== 'burstLimit') problems.push(`${at}.${field}: unknown field`);
  }
  const { rateLimit, burstLimit } = value;
  // API Gateway takes a fractional rate (requests per second) but a whole burst bucket.
  if (typeof rateLimit !== 'number' || !Number.isFinite(rateLimit) || rateLimit <= 0) {
    problems.push(`${at}.rateLimit: must be a positive number of requests per second`);
  }
  if (typeof burstLimit !== 'number' || !Number.isInteger(burstLimit) || burstLimit < 1) {
    problems.push(`${at}.burstLimit: must be a whole number of at least 1`);
  }
  return problems.length === before ? { rateLimit: rateLimit as number, burstLimit: burstLimit as number } : undefined;
}
