/**
 * Test parts for the caller client: a loopback stand-in for API Gateway's IAM authorization that verifies
 * SigV4 signatures (with the dev server's own verifier) before forwarding to a local dev server started with
 * --no-auth, as API Gateway authorizes for the function behind it (test/support/dev-server-process.ts).
 */
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type SigningCredentials, verifySignature } from '../../lambdas/local/sigv4.js';

export type StaticCredentials = SigningCredentials;

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

async function readBody(request: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function headersOf(request: IncomingMessage): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(request.headers)) {
    if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(',') : value;
  }
  return headers;
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
    const bytes = await readBody(request);
    const body = bytes.toString('utf8');
    const url = new URL(request.url ?? '/', `http://${headers.host ?? '127.0.0.1'}`);
    const verification = await verifySignature(
      { method, target: request.url ?? '/', headers: request.headers, body: bytes },
      { region: options.region, service: 'execute-api', credentials },
    );
    if (!verification.verified) {
      const errorType = verification.unsigned ? 'MissingAuthenticationTokenException' : 'InvalidSignatureException';
      refuse(response, errorType, verification.reason);
      return;
    }
    if (!url.pathname.startsWith(`${stage}/`)) {
      refuse(response, 'MissingAuthenticationTokenException', 'Missing Authentication Token');
      return;
    }
    const accepted: VerifiedRequest = {
      method,
      path: url.pathname,
      headers,
      body,
      accessKeyId: verification.accessKeyId,
      signedHeaders: verification.signedHeaders,
    };
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
