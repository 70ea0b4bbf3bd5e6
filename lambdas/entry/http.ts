import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda';
import { maxRequestBodyBytes, tokenRoute } from '../contract.js';
import type { GetTokenRequest, TokenBroker } from '../core/broker.js';
import { clientNamePattern, isClientName } from '../core/config.js';
import { BrokerError, toBrokerError } from '../core/errors.js';
import { type AuditSink, logFailure, logInvalidated, logServed } from './audit.js';
import { tokenRequestFieldList, tokenRequestFields, tokenRequestOf } from './token-fields.js';

export { tokenRoute } from '../contract.js';

const allowedBodyFields = new Set<string>(tokenRequestFields);

const baseHeaders = {
  'Content-Type': 'application/json',
  // RFC 6749 section 5.1: token responses must not be cached by anything in between.
  'Cache-Control': 'no-store',
  Pragma: 'no-cache',
};

/**
 * API Gateway REST proxy event → broker → response. POST fetches a token; DELETE (a separately granted
 * IAM resource) drops every cached token of the client. Every failure becomes an OAuth-style JSON body.
 */
export async function handleHttpEvent(
  event: APIGatewayProxyEvent,
  broker: TokenBroker,
  sink: AuditSink,
): Promise<APIGatewayProxyResult> {
  const caller = event.requestContext?.identity?.userArn ?? undefined;
  // The path parameter is the caller's text: a refusal's log line names it only when it is a client name.
  const named: unknown = event.pathParameters?.client;
  const client = isClientName(named) ? named : undefined;
  try {
    const request = parseHttpRequest(event);
    if (request.method === 'DELETE') {
      const { dropped } = await broker.invalidate(request.client);
      logInvalidated(sink, { caller, channel: 'http', client: request.client, dropped });
      return { statusCode: 200, headers: baseHeaders, body: JSON.stringify({ client: request.client, dropped }) };
    }
    const result = await broker.getToken(request.token);
    logServed(sink, { caller, channel: 'http', client: request.client, result });
    return { statusCode: 200, headers: baseHeaders, body: JSON.stringify(result.response) };
  } catch (thrown) {
    const error = toBrokerError(thrown);
    logFailure(sink, { caller, channel: 'http', client, error });
    // RFC 9110 section 10.2.3: a 503 may say when to come back, which a cooldown knows.
    const headers =
      error.retryAfterSeconds === undefined
        ? baseHeaders
        : { ...baseHeaders, 'Retry-After': String(error.retryAfterSeconds) };
    return { statusCode: error.status, headers, body: JSON.stringify(error.toBody()) };
  }
}

type HttpRequest = { method: 'POST'; client: string; token: GetTokenRequest } | { method: 'DELETE'; client: string };

function parseHttpRequest(event: APIGatewayProxyEvent): HttpRequest {
  if (event.resource !== tokenRoute) throw new BrokerError('not_found', 'no such route');
  const method = event.httpMethod;
  if (method !== 'POST' && method !== 'DELETE') {
    throw new BrokerError('method_not_allowed', `${tokenRoute} accepts POST and DELETE only`);
  }
  // API Gateway admits only SigV4-signed callers; an event without an IAM identity did not come through it.
  if (!event.requestContext?.identity?.userArn) {
    throw new BrokerError('access_denied', 'the request carries no IAM caller identity');
  }
  const client: unknown = event.pathParameters?.client;
  if (!isClientName(client)) {
    throw new BrokerError('invalid_request', `the path does not name a client (${clientNamePattern.source})`);
  }
  if (method === 'DELETE') return { method, client };
  return { method, client, token: tokenRequestOf(client, parseBody(event)) };
}

function parseBody(event: APIGatewayProxyEvent): Record<string, unknown> {
  if (event.body === null || event.body === undefined || event.body === '') return {};
  if (typeof event.body !== 'string') throw new BrokerError('invalid_request', 'the body must be a string of JSON');
  const contentType = headerValue(event.headers, 'content-type');
  if (contentType !== undefined && !/^application\/json\s*(;.*)?$/i.test(contentType)) {
    throw new BrokerError('invalid_request', 'the body must be application/json');
  }
  const text = event.isBase64Encoded ? Buffer.from(event.body, 'base64').toString('utf8') : event.body;
  if (Buffer.byteLength(text, 'utf8') > maxRequestBodyBytes) {
    throw new BrokerError('invalid_request', `the body is larger than ${maxRequestBodyBytes} bytes`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new BrokerError('invalid_request', 'the body is not valid JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new BrokerError('invalid_request', 'the body must be a JSON object');
  }
  const unknown = Object.keys(parsed).filter((key) => !allowedBodyFields.has(key));
  if (unknown.length > 0) {
    throw new BrokerError('invalid_request', `the body may only contain the fields ${tokenRequestFieldList}`);
  }
  return parsed as Record<string, unknown>;
}

function headerValue(headers: APIGatewayProxyEvent['headers'], name: string): string | undefined {
  if (headers === null || headers === undefined) return undefined;
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() === name) return value ?? undefined;
  }
  return undefined;
}
