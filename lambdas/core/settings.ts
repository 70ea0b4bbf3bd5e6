/**
 * The deployment's settings (`context.tokenBroker` in cdk.json) and their one parser. `cdk synth`, the
 * `TokenBroker` construct, `npm start` and the function's cold start all validate with the code here and in
 * config.ts, so a value one of them refuses, every one refuses, with the same message.
 */
import {
  environmentVariables,
  functionTimeoutMs,
  type RuntimeSettingName,
  type RuntimeSettingValues,
  runtimeSettingNames,
  runtimeSettings,
} from '../contract.js';
import { checkTimeBudget } from './broker.js';
import {
  arnsOfRegistry,
  type ClientRegistry,
  type ConfigOptions,
  clientNamePattern,
  clientRegistryProblems,
  configErrorOf,
  type NamedArn,
  partitionProblems,
  principalArnPattern,
  registryOf,
  repeatedKeyProblems,
  wholeNumberProblem,
} from './config.js';
import { checkHostPatterns } from './endpoint-hosts.js';

/** The key under which `cdk.json` (or `cdk synth -c`) carries the broker's deployment settings. */
export const contextKey = 'tokenBroker';

/**
 * The validated `tokenBroker` settings: what the app hands to the stack and the local server runs on. The
 * runtime settings (refreshWindowSeconds, upstreamBudgetMs, ...) are the contract's table, described there.
 */
export interface TokenBrokerSettings extends RuntimeSettingValues {
  clients: ClientRegistry;
  /** 12-digit account ids whose principals may call the API; without it (and without an org), the deploying account. */
  allowedAccounts?: string[];
  /** An AWS Organizations id (o-…) whose accounts may call the API. */
  allowedOrgId?: string;
  /** Interface VPC endpoint ids (execute-api): the API becomes PRIVATE and admits only these endpoints. */
  vpcEndpointIds?: string[];
  /** A standard SNS topic, in the stack's region, that gets every alarm's ALARM and OK notifications. */
  alarmTopicArn?: string;
  /** The CloudFormation stack name; distinct names let several deployments share an account. @default TokenBroker */
  stackName?: string;
  /** The API's stage, the first segment of every route. @default v1 */
  stage?: string;
  /** Stage throttling across all clients. @default 50 requests/s, burst 100 */
  throttle?: { rateLimit: number; burstLimit: number };
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

/** Every field `tokenBroker` may have: the deployment's own, then the runtime settings of the contract's table. */
export const settingNames = [
  'clients',
  'allowedAccounts',
  'allowedOrgId',
  'vpcEndpointIds',
  'alarmTopicArn',
  'stackName',
  'stage',
  'throttle',
  'adminPrincipals',
  'auditTrail',
  'legacyRootAliases',
  'tokenEndpointHosts',
  ...runtimeSettingNames,
] as const;
export type SettingName = (typeof settingNames)[number];
const knownFields = new Set<string>(settingNames);
export const accountIdPattern = /^\d{12}$/;
export const orgIdPattern = /^o-[a-z0-9]{10,32}$/;
export const vpcEndpointIdPattern = /^vpce-[0-9a-f]{8,17}$/;
// CloudFormation's rule for stack names.
export const stackNamePattern = /^[A-Za-z][A-Za-z0-9-]{0,127}$/;
// API Gateway stage names: letters, digits, hyphens and underscores.
export const stageNamePattern = /^[A-Za-z0-9_-]{1,128}$/;
// A standard topic: CloudWatch alarm actions cannot publish to a FIFO topic.
export const snsTopicArnPattern = /^arn:aws(-[a-z]+)*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$/;

export interface SettingsOptions {
  /** Where the settings were read, for the error's header: `cdk.json`, the construct's props. */
  source?: string;
  /**
   * The JSON text the settings were read from and the keys that lead to them in it, where keys that JSON.parse
   * silently drops (a client declared twice) are found. A string input is its own text.
   */
  text?: { json: string; path: readonly string[] };
  /** Clients read from elsewhere (TOKEN_BROKER_CLIENTS) and already checked: the settings' own are not read. */
  clients?: ClientRegistry;
  /** Plain http discovery on loopback: the local dev server only. */
  allowLoopbackHttp?: boolean;
}

/** The settings, or every problem with them; nothing is thrown, so a caller can add problems of its own. */
export function readTokenBrokerSettings(
  input: unknown,
  options: SettingsOptions = {},
): { settings?: TokenBrokerSettings; problems: string[] } {
  let raw = input;
  let text = options.text;
  if (typeof raw === 'string') {
    try {
      raw = JSON.parse(raw);
    } catch {
      return { problems: [`${contextKey}: is not valid JSON`] };
    }
    text = { json: input as string, path: [] };
  }
  if (raw === undefined) return { problems: [`${contextKey}: is required (cdk.json "context")`] };
  if (!isRecord(raw)) return { problems: [`${contextKey}: must be an object`] };

  const problems = text === undefined ? [] : repeatedKeyProblems(text.json, text.path, contextKey);
  let clients = options.clients;
  if (clients === undefined) {
    const registryOptions: ConfigOptions = { at: `${contextKey}.clients` };
    if (options.allowLoopbackHttp === true) registryOptions.allowLoopbackHttp = true;
    const clientProblems = clientRegistryProblems(raw.clients, registryOptions);
    problems.push(...clientProblems);
    if (clientProblems.length === 0) clients = registryOf(raw.clients as Record<string, unknown>);
  }
  const settings = deploymentSettingsOf(raw, clients, problems);
  if (problems.length > 0 || clients === undefined) return { problems };
  return { settings: { clients, ...settings }, problems };
}

/**
 * Validates the whole `tokenBroker` settings. Every problem is reported at once, each named by its path
 * (`tokenBroker.allowedAccounts[1]`, `tokenBroker.clients.bwell.secretName`, ...), under a header that names
 * `options.source`. A string is accepted as JSON, for `cdk synth -c tokenBroker='{...}'`.
 */
export function parseTokenBrokerSettings(input: unknown, options: SettingsOptions = {}): TokenBrokerSettings {
  const { settings, problems } = readTokenBrokerSettings(input, options);
  if (settings === undefined) throw configErrorOf(problems, options.source);
  return settings;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Everything but the clients, and the checks that relate the two. */
function deploymentSettingsOf(
  raw: Record<string, unknown>,
  clients: ClientRegistry | undefined,
  problems: string[],
): Omit<TokenBrokerSettings, 'clients'> {
  for (const field of Object.keys(raw)) {
    if (!knownFields.has(field)) problems.push(`${contextKey}.${field}: unknown field`);
  }
  const allowedAccounts = stringList(raw, 'allowedAccounts', accountIdPattern, 'a 12-digit AWS account id', problems);
  const vpcEndpointIds = stringList(raw, 'vpcEndpointIds', vpcEndpointIdPattern, 'a VPC endpoint id', problems);
  const allowedOrgId = namedBy(raw, 'allowedOrgId', orgIdPattern, 'an AWS Organizations id', problems);
  const alarmTopicArn = raw.alarmTopicArn;
  if (alarmTopicArn !== undefined && (typeof alarmTopicArn !== 'string' || !snsTopicArnPattern.test(alarmTopicArn))) {
    problems.push(`${contextKey}.alarmTopicArn: must be the ARN of a standard (not FIFO) SNS topic`);
  }
  const stackName = namedBy(raw, 'stackName', stackNamePattern, 'a CloudFormation stack name', problems);
  const stage = namedBy(raw, 'stage', stageNamePattern, 'an API Gateway stage name', problems);
  const throttle = throttleOf(raw.throttle, problems);
  const runtime = runtimeSettingsOf(raw, problems);
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

  if (clients !== undefined) {
    legacyRootAliases?.forEach((name, index) => {
      if (!Object.hasOwn(clients, name)) {
        problems.push(
          `${contextKey}.legacyRootAliases[${index}]: ${JSON.stringify(name)} is not a client of the registry; ` +
            'remove it from the list when its client is removed',
        );
      }
    });
    // With explicit accounts and no organization, a principal of another account could never reach the API.
    if (allowedAccounts !== undefined && raw.allowedOrgId === undefined) {
      problems.push(...unadmittedPrincipals(clients, allowedAccounts, `${contextKey}.allowedAccounts`));
    }
    const arns: NamedArn[] = [
      ...arnsOfRegistry(clients, `${contextKey}.clients`),
      ...(adminPrincipals ?? []).map((arn, index) => ({ at: `${contextKey}.adminPrincipals[${index}]`, arn })),
      ...(typeof alarmTopicArn === 'string' && snsTopicArnPattern.test(alarmTopicArn)
        ? [{ at: `${contextKey}.alarmTopicArn`, arn: alarmTopicArn }]
        : []),
    ];
    problems.push(...partitionProblems(arns));
  }

  return {
    ...(allowedAccounts === undefined ? {} : { allowedAccounts }),
    ...(allowedOrgId === undefined ? {} : { allowedOrgId }),
    ...(vpcEndpointIds === undefined ? {} : { vpcEndpointIds }),
    ...(typeof alarmTopicArn === 'string' ? { alarmTopicArn } : {}),
    ...(stackName === undefined ? {} : { stackName }),
    ...(stage === undefined ? {} : { stage }),
    ...(throttle === undefined ? {} : { throttle }),
    ...runtime,
    ...(adminPrincipals === undefined ? {} : { adminPrincipals }),
    ...(typeof auditTrail === 'boolean' ? { auditTrail } : {}),
    ...(legacyRootAliases === undefined ? {} : { legacyRootAliases }),
    ...(tokenEndpointHosts === undefined ? {} : { tokenEndpointHosts }),
  };
}

/**
 * A principal granted a client (to fetch its token or to invalidate it) must be able to reach the API at all:
 * each principal's account must be one of `admitted`, which `by` names in the problem.
 */
export function unadmittedPrincipals(clients: ClientRegistry, admitted: readonly string[], by: string): string[] {
  return Object.entries(clients).flatMap(([name, client]) =>
    (['allowedPrincipals', 'adminPrincipals'] as const).flatMap((field) =>
      (client[field] ?? []).flatMap((arn, index) => {
        const account = arn.split(':')[4] ?? '';
        return admitted.includes(account)
          ? []
          : [`${contextKey}.clients.${name}.${field}[${index}]: account ${account} is not admitted by ${by}`];
      }),
    ),
  );
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

function throttleOf(value: unknown, problems: string[]): TokenBrokerSettings['throttle'] {
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
  if (rateLimit === undefined) {
    problems.push(`${at}.rateLimit: is required`);
  } else if (typeof rateLimit !== 'number' || !Number.isFinite(rateLimit) || rateLimit <= 0) {
    problems.push(`${at}.rateLimit: must be a positive number of requests per second`);
  }
  if (burstLimit === undefined) {
    problems.push(`${at}.burstLimit: is required`);
  } else if (typeof burstLimit !== 'number' || !Number.isInteger(burstLimit) || burstLimit < 1) {
    problems.push(`${at}.burstLimit: must be a whole number of at least 1`);
  }
  return problems.length === before ? { rateLimit: rateLimit as number, burstLimit: burstLimit as number } : undefined;
}

/**
 * What a runtime setting within its bounds may still conflict with, which only the deployment as a whole knows.
 * A setting without an entry has none.
 */
const runtimeSettingConflicts: { [Name in RuntimeSettingName]?: (value: number) => string | undefined } = {
  // A waiter may wait out a lease and then spend the whole budget itself: both must fit the function's timeout.
  upstreamBudgetMs: (upstreamBudgetMs) => checkTimeBudget({ upstreamBudgetMs, functionTimeoutMs }),
};

/** The runtime settings `raw` gives, each checked against its bounds and conflicts; problems name the field. */
function runtimeSettingsOf(raw: Record<string, unknown>, problems: string[]): RuntimeSettingValues {
  const values: RuntimeSettingValues = {};
  for (const name of runtimeSettingNames) {
    const value = raw[name];
    if (value === undefined) continue;
    const problem =
      wholeNumberProblem(value, runtimeSettings[name]) ?? runtimeSettingConflicts[name]?.(value as number);
    if (problem === undefined) values[name] = value as number;
    else problems.push(`${contextKey}.${name}: ${problem}`);
  }
  return values;
}

/**
 * The runtime settings as the function reads them at cold start: each from its environment variable, else its
 * default. A variable that is set but refused is a problem naming the variable and what it holds, and its
 * default stands in, so that every problem of the environment is found at once.
 */
export function runtimeSettingsOfEnvironment(
  env: Readonly<Record<string, string | undefined>>,
  problems: string[],
): Record<RuntimeSettingName, number> {
  const values = {} as Record<RuntimeSettingName, number>;
  for (const name of runtimeSettingNames) {
    const { environmentVariable: variable, default: fallback } = runtimeSettings[name];
    const text = env[variable];
    values[name] = fallback;
    if (text !== undefined && text !== '') {
      // Number('') is 0 and Number(' 1 ') is 1: only the digits themselves are a whole number here.
      const number = /^-?\d+$/.test(text) ? Number(text) : Number.NaN;
      const problem = wholeNumberProblem(number, runtimeSettings[name]);
      if (problem === undefined) values[name] = number;
      else problems.push(`${variable}: ${problem}, got ${JSON.stringify(text)}`);
    }
    const conflict = runtimeSettingConflicts[name]?.(values[name]);
    if (conflict !== undefined) problems.push(`${variable}: ${conflict}`);
  }
  return values;
}

/** The runtime settings `settings` gives, and only those: what the stack hands on to the construct's props. */
export function runtimeSettingValuesOf(settings: RuntimeSettingValues): RuntimeSettingValues {
  const values: RuntimeSettingValues = {};
  for (const name of runtimeSettingNames) {
    const value = settings[name];
    if (value !== undefined) values[name] = value;
  }
  return values;
}

/**
 * The function's environment for the settings it reads at cold start: each runtime setting given, under its
 * variable as `runtimeSettingsOfEnvironment` reads it, and the approved token endpoint hosts, comma-separated.
 * A setting not given is left out, so that the function's default applies.
 */
export function functionEnvironmentOf(
  settings: RuntimeSettingValues & { readonly tokenEndpointHosts?: readonly string[] | undefined },
): Record<string, string> {
  const variables: Record<string, string> = {};
  for (const name of runtimeSettingNames) {
    const value = settings[name];
    if (value !== undefined) variables[runtimeSettings[name].environmentVariable] = String(value);
  }
  if (settings.tokenEndpointHosts !== undefined) {
    variables[environmentVariables.tokenEndpointHosts] = settings.tokenEndpointHosts.join(',');
  }
  return variables;
}
