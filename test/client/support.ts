/**
 * Test parts for the caller client: a loopback stand-in for API Gateway's IAM authorization that verifies
 * SigV4 signatures before forwarding to the local dev server (test/support/dev-server-process.ts).
 */
import assert from 'node:assert/strict';
import { createHash, timingSafeEqual } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Sha256 } from '@aws-crypto/sha256-js';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';

export interface StaticCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

export interface VerifiedRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: string;
  accessKeyId: string;
  signedHeaders: string[];
}

export interface SigningGateway {
  /** e.g. http://127.0.0.1:1234/v1/ */
  baseUrl: string;
  /** Requests whose signature verified, in arrival order; each was forwarded. */
  verified: VerifiedRequest[];
  /** Why each refused request was refused. */
  refused: string[];
  close(): Promise<void>;
}

const authorizationPattern =
  /^AWS4-HMAC-SHA256 Credential=([^/\s]+)\/(\d{8})\/([^/\s]+)\/([^/\s]+)\/aws4_request, SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})$/;

function sha256Hex(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

/** 20240102T030405Z → Date */
function parseAmzDate(value: string): Date {
  const match = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(value);
  assert.ok(match, 'x-amz-date is not YYYYMMDDTHHMMSSZ');
  const [, year, month, day, hours, minutes, seconds] = match;
  return new Date(`${year}-${month}-${day}T${hours}:${minutes}:${seconds}Z`);
}

async function readBody(request: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function headersOf(request: IncomingMessage): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(request.headers)) {
    if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(',') : value;
  }
  return headers;
}

/**
 * Checks the request the way API Gateway's AWS_IAM authorization does, then re-signs it with
 * @smithy/signature-v4 and the credentials it knows for the access key, and compares. Throws the reason.
 */
async function verifySignature(
  request: { method: string; url: URL; headers: Record<string, string>; body: string },
  expected: { region: string; service: string; credentials: Map<string, StaticCredentials> },
): Promise<VerifiedRequest> {
  const authorization = request.headers.authorization;
  assert.ok(authorization, 'no authorization header');
  const match = authorizationPattern.exec(authorization);
  assert.ok(match, `authorization is not AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`);
  const [, accessKeyId = '', shortDate, region, service, signedHeaderList = ''] = match;
  assert.equal(region, expected.region, 'credential scope region');
  assert.equal(service, expected.service, 'credential scope service');
  const credentials = expected.credentials.get(accessKeyId);
  assert.ok(credentials, `unknown access key ${accessKeyId}`);

  const amzDate = request.headers['x-amz-date'];
  assert.ok(amzDate, 'no x-amz-date');
  const signingDate = parseAmzDate(amzDate);
  assert.equal(amzDate.slice(0, 8), shortDate, 'x-amz-date and the credential scope date differ');
  assert.ok(Math.abs(Date.now() - signingDate.getTime()) < 5 * 60_000, 'x-amz-date is more than 5 minutes off');

  const signedHeaders = signedHeaderList.split(';');
  assert.deepEqual(signedHeaders, [...signedHeaders].sort(), 'SignedHeaders is not sorted');
  for (const required of ['host', 'x-amz-date', 'x-amz-content-sha256']) {
    assert.ok(signedHeaders.includes(required), `${required} is not signed`);
  }
  assert.equal(
    request.headers['x-amz-content-sha256'],
    sha256Hex(request.body),
    'x-amz-content-sha256 is not the body',
  );
  if (credentials.sessionToken !== undefined || request.headers['x-amz-security-token'] !== undefined) {
    assert.equal(request.headers['x-amz-security-token'], credentials.sessionToken, 'x-amz-security-token');
    assert.ok(signedHeaders.includes('x-amz-security-token'), 'x-amz-security-token is not signed');
  }

  // Only what was signed; the signer itself adds x-amz-date (from signingDate) and the session token.
  const headers: Record<string, string> = {};
  for (const name of signedHeaders) {
    const value = request.headers[name];
    assert.ok(value !== undefined, `signed header ${name} is missing`);
    if (name !== 'x-amz-date' && name !== 'x-amz-security-token') headers[name] = value;
  }
  const signer = new SignatureV4({ service: expected.service, region: expected.region, credentials, sha256: Sha256 });
  const resigned = await signer.sign(
    new HttpRequest({
      method: request.method,
      protocol: request.url.protocol,
      hostname: request.url.hostname,
      path: request.url.pathname,
      query: Object.fromEntries(request.url.searchParams),
      headers,
      body: request.body,
    }),
    { signingDate },
  );
  const expectedAuthorization = Buffer.from(String(resigned.headers.authorization));
  const actualAuthorization = Buffer.from(authorization);
  assert.ok(
    expectedAuthorization.length === actualAuthorization.length &&
      timingSafeEqual(expectedAuthorization, actualAuthorization),
    'The request signature we calculated does not match the signature you provided',
  );
  return {
    method: request.method,
    path: request.url.pathname,
    headers: request.headers,
    body: request.body,
    accessKeyId,
    signedHeaders,
  };
}

/**
 * A loopback stand-in for API Gateway in front of `target`: serves `{stage}/...`, refuses unsigned or
 * wrongly signed requests with 403 and `x-amzn-ErrorType` as API Gateway does, forwards the others.
 */
export async function startSigningGateway(options: {
  target: string;
  region: string;
  credentials: StaticCredentials[];
  stage?: string;
}): Promise<SigningGateway> {
  const stage = options.stage ?? '/v1';
  const credentials = new Map(options.credentials.map((entry) => [entry.accessKeyId, entry]));
  const verified: VerifiedRequest[] = [];
  const refused: string[] = [];

  const refuse = (response: ServerResponse, errorType: string, message: string) => {
    refused.push(message);
    response.writeHead(403, {
      'content-type': 'application/json',
      'x-amzn-errortype': `${errorType}:http://internal.amazon.com/coral/com.amazon.coral.service/`,
    });
    response.end(JSON.stringify({ message }));
  };

  const server = createServer(async (request, response) => {
    const method = request.method ?? 'GET';
    const headers = headersOf(request);
    const body = await readBody(request);
    const url = new URL(request.url ?? '/', `http://${headers.host ?? '127.0.0.1'}`);
    if (headers.authorization === undefined) {
      refuse(response, 'MissingAuthenticationTokenException', 'Missing Authentication Token');
      return;
    }
    let accepted: VerifiedRequest;
    try {
      accepted = await verifySignature(
        { method, url, headers, body },
        { region: options.region, service: 'execute-api', credentials },
      );
    } catch (error) {
      refuse(response, 'InvalidSignatureException', error instanceof Error ? error.message : String(error));
      return;
    }
    if (!url.pathname.startsWith(`${stage}/`)) {
      refuse(response, 'MissingAuthenticationTokenException', 'Missing Authentication Token');
      return;
    }
    verified.push(accepted);
    const upstream = await fetch(`${options.target}${url.pathname.slice(stage.length)}`, {
      method,
      headers: headers['content-type'] === undefined ? {} : { 'content-type': headers['content-type'] },
      ...(body === '' ? {} : { body }),
    });
    const passOn: Record<string, string> = {};
    for (const name of ['content-type', 'cache-control', 'pragma']) {
      const value = upstream.headers.get(name);
      if (value !== null) passOn[name] = value;
    }
    response.writeHead(upstream.status, passOn);
    response.end(await upstream.text());
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    baseUrl: `http://127.0.0.1:${port}${stage}/`,
    verified,
    refused,
    async close() {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
}

/** A fetch that counts and records what goes through it. */
export function countingFetch(inner: typeof fetch = fetch) {
  const calls: string[] = [];
  const counted: typeof fetch = (input, init) => {
    calls.push(String(input instanceof Request ? input.url : input));
    return inner(input, init);
  };
  return { fetch: counted, calls };
}

/** A loopback port nothing listens on. */
export async function closedPort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  server.close();
  await once(server, 'close');
  return port;
}
