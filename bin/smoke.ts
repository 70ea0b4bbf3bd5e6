/**
 * `npm run smoke -- --api-url <ApiUrl> --client <name> [--function <FunctionName>] [--unlisted-client <name>]`
 * (or `--outputs <cdk outputs file> [--stack <name>]` instead of the URL and function): the post-deploy smoke
 * test. With the caller's default AWS credentials it
 *   1. fetches a token for the client over HTTP, SigV4-signed;
 *   2. fetches one by invoking the client's Lambda alias (when a function is named);
 *   3. checks that a client the registry does not list is refused, over HTTP (403 or 404) and by invoke
 *      (a function error, or no such alias, or no grant on it).
 * One verdict line per check; a token is described by its length, expires_in and scope, never shown, and
 * every line is printable: what an endpoint sent has its control characters replaced. Exits 1 when a check
 * fails, 2 on a usage error (a plain http URL to anything but loopback among them). AWS_ENDPOINT_URL_LAMBDA
 * points the invokes elsewhere (the local dev server, for one).
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { LambdaClient } from '@aws-sdk/client-lambda';
import {
  type BrokerToken,
  createTokenBrokerClient,
  printable,
  TokenBrokerError,
  transportErrorCode,
} from '@token-broker/client';
import { clientNamePattern } from '../lambdas/core/config.js';

const usage = `usage: npm run smoke -- --client <name> (--api-url <ApiUrl> | --outputs <file> [--stack <name>])
       [--function <FunctionName or FunctionArn>] [--unlisted-client <name>] [--scope <scopes>] [--region <region>]
  --outputs       the file written by \`cdk deploy --outputs-file <file>\`: ApiUrl and FunctionName come from it
  --function      the unqualified function; without it (and without --outputs) the invoke checks are skipped
  --unlisted-client  a client the registry does not list; default a random name`;

/** Refusals of an unlisted client's alias that come from Lambda itself: no such alias, or no grant on it. */
const lambdaRefusals = new Set(['ResourceNotFoundException', 'AccessDeniedException']);
/** Function errors with which the broker refuses a client it does not serve. */
const brokerRefusals = new Set(['access_denied', 'unknown_client']);

class UsageError extends Error {}

interface SmokeSettings {
  apiUrl: string;
  client: string;
  scope: string | undefined;
  functionName: string | undefined;
  unlistedClient: string;
  region: string;
}

type Verdict = 'PASS' | 'FAIL' | 'SKIP';
interface CheckResult {
  verdict: Verdict;
  line: string;
}

function readOutputs(file: string, stack: string | undefined): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    throw new UsageError(`cannot read ${file} as JSON (write it with cdk deploy --outputs-file ${file})`);
  }
  const stacks = typeof parsed === 'object' && parsed !== null ? (parsed as Record<string, unknown>) : {};
  const names = Object.keys(stacks);
  const name = stack ?? (names.length === 1 ? names[0] : undefined);
  if (name === undefined) throw new UsageError(`${file} holds the stacks ${names.join(', ')}: name one with --stack`);
  const outputs = stacks[name];
  if (typeof outputs !== 'object' || outputs === null) throw new UsageError(`${file} has no outputs of stack ${name}`);
  return outputs as Record<string, unknown>;
}

function regionOf(apiUrl: string, functionName: string | undefined): string | undefined {
  const fromUrl = /\.execute-api\.([a-z0-9-]+)\.amazonaws\.com/.exec(new URL(apiUrl).hostname)?.[1];
  const fromArn = functionName?.startsWith('arn:') ? functionName.split(':')[3] : undefined;
  return fromUrl ?? fromArn ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION;
}

function settingsFrom(argv: string[]): SmokeSettings {
  let values: ReturnType<typeof parseCommandLine>['values'];
  try {
    values = parseCommandLine(argv).values;
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : 'bad arguments');
  }
  const outputs = values.outputs === undefined ? {} : readOutputs(values.outputs, values.stack);
  const text = (value: unknown) => (typeof value === 'string' && value !== '' ? value : undefined);
  const apiUrl = values['api-url'] ?? text(outputs.ApiUrl);
  if (apiUrl === undefined) throw new UsageError('name the API with --api-url or --outputs');
  if (!URL.canParse(apiUrl)) throw new UsageError(`--api-url is not a URL: ${printable(apiUrl, 100)}`);
  if (values.client === undefined) throw new UsageError('name the client with --client');
  const functionName = values.function ?? text(outputs.FunctionName) ?? text(outputs.FunctionArn);
  const unlistedClient = values['unlisted-client'] ?? `smoke-unlisted-${randomBytes(6).toString('hex')}`;
  for (const [option, name] of [
    ['--client', values.client],
    ['--unlisted-client', unlistedClient],
  ]) {
    if (!clientNamePattern.test(name ?? '')) throw new UsageError(`${option} must match ${clientNamePattern.source}`);
  }
  if (unlistedClient === values.client) throw new UsageError('--unlisted-client must differ from --client');
  const region = values.region ?? regionOf(apiUrl, functionName);
  if (region === undefined) throw new UsageError('name the region with --region (or set AWS_REGION)');
  return { apiUrl, client: values.client, scope: values.scope, functionName, unlistedClient, region };
}

function parseCommandLine(argv: string[]) {
  return parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      'api-url': { type: 'string' },
      outputs: { type: 'string' },
      stack: { type: 'string' },
      client: { type: 'string' },
      scope: { type: 'string' },
      function: { type: 'string' },
      'unlisted-client': { type: 'string' },
      region: { type: 'string' },
      help: { type: 'boolean' },
    },
  });
}

/** TokenBrokerError messages never hold a token; anything else is named with a bounded excerpt. */
function describe(error: unknown): string {
  if (error instanceof TokenBrokerError) return error.message;
  if (!(error instanceof Error)) return 'failed with something that is not an Error';
  return `${printable(error.name, 100)}: ${printable(error.message)}`;
}

function line(verdict: Verdict, channel: string, text: string): CheckResult {
  return { verdict, line: `${verdict}  ${channel.padEnd(6)}  ${printable(text, 1000)}` };
}

async function tokenCheck(channel: string, label: string, fetchToken: () => Promise<BrokerToken>) {
  const askedAt = Date.now();
  try {
    const token = await fetchToken();
    const expiresIn = Math.round((token.expiresAt - askedAt) / 1000);
    return line(
      'PASS',
      channel,
      `${label}: token served (length ${token.accessToken.length}, expires_in ${expiresIn}, scope "${token.scope}")`,
    );
  } catch (error) {
    return line('FAIL', channel, `${label}: ${describe(error)}`);
  }
}

async function refusalCheck(
  channel: 'http' | 'invoke',
  label: string,
  fetchToken: () => Promise<BrokerToken>,
): Promise<CheckResult> {
  try {
    await fetchToken();
    return line('FAIL', channel, `${label}: a token was served for a client the registry should not list`);
  } catch (error) {
    if (!(error instanceof TokenBrokerError)) return line('FAIL', channel, `${label}: ${describe(error)}`);
    if (channel === 'http' && (error.status === 403 || error.status === 404)) {
      return line('PASS', channel, `${label}: refused (HTTP ${error.status}, ${error.code})`);
    }
    if (channel === 'invoke' && error.code !== transportErrorCode && brokerRefusals.has(error.code)) {
      return line('PASS', channel, `${label}: refused (function error ${error.code})`);
    }
    const cause = error.cause instanceof Error ? error.cause.name : undefined;
    if (channel === 'invoke' && cause !== undefined && lambdaRefusals.has(cause)) {
      return line('PASS', channel, `${label}: refused (${cause})`);
    }
    return line('FAIL', channel, `${label}: not the expected refusal: ${describe(error)}`);
  }
}

async function runSmoke(settings: SmokeSettings): Promise<CheckResult[]> {
  let http: ReturnType<typeof createTokenBrokerClient>;
  try {
    http = createTokenBrokerClient({ transport: { kind: 'http', baseUrl: settings.apiUrl, region: settings.region } });
  } catch (error) {
    throw new UsageError(`--api-url: ${error instanceof Error ? error.message : 'refused'}`);
  }
  const lambda = settings.functionName === undefined ? undefined : new LambdaClient({ region: settings.region });
  const invoke =
    lambda === undefined || settings.functionName === undefined
      ? undefined
      : createTokenBrokerClient({
          transport: { kind: 'lambda', functionName: settings.functionName, lambdaClient: lambda },
        });
  const scoped = (client: string) => (settings.scope === undefined ? { client } : { client, scope: settings.scope });
  const unlisted = `unlisted client ${settings.unlistedClient}`;
  const inconclusive = `${unlisted}: inconclusive, the listed client was not served`;
  const results: CheckResult[] = [];
  try {
    const httpToken = await tokenCheck('http', `token for ${settings.client}`, () =>
      http.getToken(scoped(settings.client)),
    );
    const invokeToken =
      invoke === undefined
        ? line('SKIP', 'invoke', 'no function named (--function or --outputs)')
        : await tokenCheck('invoke', `token for ${settings.client} through its alias`, () =>
            invoke.getToken(scoped(settings.client)),
          );
    results.push(httpToken, invokeToken);
    // A refusal proves something only where the listed client is served: a wrong URL or function is refused too.
    results.push(
      httpToken.verdict === 'PASS'
        ? await refusalCheck('http', unlisted, () => http.getToken({ client: settings.unlistedClient }))
        : line('SKIP', 'http', inconclusive),
    );
    if (invoke !== undefined) {
      results.push(
        invokeToken.verdict === 'PASS'
          ? await refusalCheck('invoke', unlisted, () => invoke.getToken({ client: settings.unlistedClient }))
          : line('SKIP', 'invoke', inconclusive),
      );
    }
  } finally {
    lambda?.destroy();
  }
  return results;
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${usage}\n`);
    return 0;
  }
  let results: CheckResult[];
  try {
    results = await runSmoke(settingsFrom(argv));
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`smoke: ${printable(error.message, 1000)}\n${usage}\n`);
    return 2;
  }
  for (const result of results) process.stdout.write(`${result.line}\n`);
  const count = (verdict: Verdict) => results.filter((result) => result.verdict === verdict).length;
  const failed = count('FAIL');
  process.stdout.write(
    `smoke: ${failed === 0 ? 'OK' : 'FAILED'} (${count('PASS')} passed, ${failed} failed, ${count('SKIP')} skipped)\n`,
  );
  return failed === 0 ? 0 : 1;
}

process.exitCode = await main();
