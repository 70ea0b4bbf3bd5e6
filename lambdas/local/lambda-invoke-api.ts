import { apiGatewayAliasName } from '../contract.js';

/**
 * The Lambda Invoke API (`POST /2015-03-31/functions/{FunctionName}/invocations`) as the local dev server
 * serves it, so that an SDK `LambdaClient` with an endpoint override invokes the broker through a client's
 * alias. Names, qualifiers, invocation types and errors follow Lambda; signatures are checked by the server
 * (caller-auth.ts) before a request gets here.
 */
export const localFunctionName = 'token-broker-local';
/** The region the local function and the local caller credentials are in. */
export const localRegion = 'us-east-1';
const localAccount = '000000000000';
export const localFunctionArn = `arn:aws:lambda:${localRegion}:${localAccount}:function:${localFunctionName}`;

export interface LambdaApiAnswer {
  statusCode: number;
  headers: Record<string, string>;
  body: string;
}

export type InvocationType = 'RequestResponse' | 'Event' | 'DryRun';

export interface Invocation {
  /** The function ARN, with the qualifier it was invoked through. */
  invokedFunctionArn: string;
  event: unknown;
  invocationType: InvocationType;
}

export interface InvokeRequest {
  method: string;
  url: URL;
  /** The payload as sent; null when there is none. */
  body: string | null;
  /** The X-Amz-Invocation-Type header. */
  invocationType: string | undefined;
}

const invocationsPath = /^\/2015-03-31\/functions\/([^/]+)\/invocations$/;
const functionNamePattern = /^[a-zA-Z0-9._-]{1,64}$/;
const qualifierPattern = /^(\$LATEST|[a-zA-Z0-9_-]{1,128})$/;
const invocationTypes: readonly string[] = ['RequestResponse', 'Event', 'DryRun'];

export function isInvokePath(pathname: string): boolean {
  return invocationsPath.test(pathname);
}

/** An error of the Lambda API itself (not of the function), in the shape the SDK parses. */
export function lambdaApiError(statusCode: number, errorType: string, message: string): LambdaApiAnswer {
  return {
    statusCode,
    headers: { 'content-type': 'application/json', 'x-amzn-errortype': errorType },
    body: JSON.stringify({ Type: 'User', message }),
  };
}

interface FunctionName {
  name: string;
  region: string;
  account: string;
  qualifier: string | undefined;
}

/** `name`, `name:qualifier`, `account:function:name[:qualifier]` or the full ARN, as Lambda accepts them. */
function parseFunctionName(raw: string): FunctionName | undefined {
  const parts = raw.split(':');
  let region = localRegion;
  let account = localAccount;
  let rest: string[];
  if (parts[0] === 'arn') {
    if (parts.length < 7 || parts.length > 8 || !parts[1]?.startsWith('aws') || parts[2] !== 'lambda') return undefined;
    if (parts[5] !== 'function') return undefined;
    region = parts[3] ?? '';
    account = parts[4] ?? '';
    rest = parts.slice(6);
  } else if (parts[1] === 'function') {
    if (parts.length < 3 || parts.length > 4) return undefined;
    account = parts[0] ?? '';
    rest = parts.slice(2);
  } else {
    if (parts.length > 2) return undefined;
    rest = parts;
  }
  const [name, qualifier] = rest;
  if (name === undefined || !functionNamePattern.test(name)) return undefined;
  if (qualifier !== undefined && !qualifierPattern.test(qualifier)) return undefined;
  return { name, region, account, qualifier };
}

/**
 * Checks an Invoke API request the way Lambda does and names the ARN it invokes. `aliases` are the aliases
 * the deployment would have; any other qualifier (a version, an unknown alias) is not found, as there.
 */
export function parseInvocation(
  request: InvokeRequest,
  aliases: ReadonlySet<string>,
): { invocation: Invocation } | { refused: LambdaApiAnswer } {
  const segment = invocationsPath.exec(request.url.pathname)?.[1];
  if (request.method !== 'POST' || segment === undefined) {
    return { refused: lambdaApiError(404, 'UnknownOperationException', 'Unknown operation') };
  }
  let rawName: string;
  try {
    rawName = decodeURIComponent(segment);
  } catch {
    rawName = '';
  }
  const target = parseFunctionName(rawName);
  if (target === undefined) {
    return {
      refused: lambdaApiError(400, 'ValidationException', 'functionName is not a function name, partial ARN or ARN'),
    };
  }
  const unqualifiedArn = `arn:aws:lambda:${target.region}:${target.account}:function:${target.name}`;
  if (unqualifiedArn !== localFunctionArn) {
    return { refused: lambdaApiError(404, 'ResourceNotFoundException', `Function not found: ${unqualifiedArn}`) };
  }

  const queryQualifier = request.url.searchParams.get('Qualifier') || undefined;
  if (queryQualifier !== undefined && !qualifierPattern.test(queryQualifier)) {
    return { refused: lambdaApiError(400, 'ValidationException', 'Qualifier is not a version or an alias name') };
  }
  if (target.qualifier !== undefined && queryQualifier !== undefined && target.qualifier !== queryQualifier) {
    return {
      refused: lambdaApiError(
        400,
        'InvalidParameterValueException',
        'The derived qualifier from the function name does not match the specified qualifier.',
      ),
    };
  }
  const qualifier = target.qualifier ?? queryQualifier;
  // API Gateway's alias trusts the caller identity in the event; through the Invoke API the caller would write it.
  if (qualifier === apiGatewayAliasName) {
    return {
      refused: lambdaApiError(
        403,
        'AccessDeniedException',
        `the alias ${apiGatewayAliasName} is API Gateway's: locally the HTTP routes feed it, the Invoke API does not`,
      ),
    };
  }
  if (qualifier !== undefined && qualifier !== '$LATEST' && !aliases.has(qualifier)) {
    return {
      refused: lambdaApiError(404, 'ResourceNotFoundException', `Function not found: ${localFunctionArn}:${qualifier}`),
    };
  }

  const invocationType = request.invocationType ?? 'RequestResponse';
  if (!invocationTypes.includes(invocationType)) {
    return {
      refused: lambdaApiError(
        400,
        'ValidationException',
        'InvocationType must be one of Event, RequestResponse, DryRun',
      ),
    };
  }
  let event: unknown = {};
  if (request.body !== null) {
    try {
      event = JSON.parse(request.body);
    } catch {
      return {
        refused: lambdaApiError(400, 'InvalidRequestContentException', 'Could not parse request body into json'),
      };
    }
  }
  return {
    invocation: {
      invokedFunctionArn: qualifier === undefined ? localFunctionArn : `${localFunctionArn}:${qualifier}`,
      event,
      invocationType: invocationType as InvocationType,
    },
  };
}

/**
 * Runs the handler and answers as Lambda does: the result as JSON, or for a thrown error status 200 with
 * `X-Amz-Function-Error: Unhandled` and `{errorType, errorMessage}` (the error's name and message, as the
 * Node.js runtime reports them; its `trace` is left out, nothing reads it). `Event` answers 202 at once.
 */
export async function runInvocation(
  invocation: Invocation,
  handler: (event: unknown, invokedFunctionArn: string) => Promise<unknown>,
  requestId: string,
): Promise<LambdaApiAnswer> {
  const headers = { 'content-type': 'application/json', 'x-amzn-requestid': requestId };
  if (invocation.invocationType === 'DryRun') return { statusCode: 204, headers, body: '' };
  if (invocation.invocationType === 'Event') {
    // The handler logs its own failures; nobody is waiting for the answer.
    void handler(invocation.event, invocation.invokedFunctionArn).catch(() => undefined);
    return { statusCode: 202, headers, body: '' };
  }
  const executed = { ...headers, 'x-amz-executed-version': '$LATEST' };
  try {
    const result = await handler(invocation.event, invocation.invokedFunctionArn);
    return { statusCode: 200, headers: executed, body: JSON.stringify(result ?? null) };
  } catch (thrown) {
    const error =
      thrown instanceof Error
        ? { errorType: thrown.name, errorMessage: thrown.message }
        : { errorType: 'Error', errorMessage: 'the handler threw a value that is not an Error' };
    return {
      statusCode: 200,
      headers: { ...executed, 'x-amz-function-error': 'Unhandled' },
      body: JSON.stringify(error),
    };
  }
}
