import { createServer, type Server } from 'node:https';
import type { Socket } from 'node:net';
import { listenOnLoopback } from '../../lambdas/local/listen.js';
import { loadTestTls } from './tls.js';

/** What the token endpoint answers: a status, a JSON body and extra headers. */
export type ScriptedAnswer = { status: number; body: unknown; headers?: Record<string, string> };

/** One POST to the token endpoint: its form parameters and its number (1 for the first). */
export interface ScriptedTokenRequest {
  form: URLSearchParams;
  number: number;
}

export type TokenScript = (request: ScriptedTokenRequest) => Promise<ScriptedAnswer>;

/**
 * An identity provider over TLS (the test CA) whose discovery works and whose token endpoint answers whatever
 * the test's script says, when the script says: for stampede tests that hold the answer back until every
 * container is waiting, and for token answers of the test's choosing. It counts every token request that
 * reached it. Issuer `https://localhost:<port>`, token endpoint `https://127.0.0.1:<port>/token` (two hosts, as
 * with Cognito). Open sockets are destroyed on close, so a script still waiting does not keep the process alive.
 */
export async function startScriptedIdp(script: TokenScript) {
  const { key, cert } = loadTestTls();
  const sockets = new Set<Socket>();
  const requests: ScriptedTokenRequest[] = [];
  let current = script;
  const server: Server = createServer({ key, cert }, (request, response) => {
    const port = (server.address() as { port: number }).port;
    if (request.method === 'GET' && request.url === '/.well-known/openid-configuration') {
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(
        JSON.stringify({
          issuer: `https://localhost:${port}`,
          token_endpoint: `https://127.0.0.1:${port}/token`,
          token_endpoint_auth_methods_supported: ['client_secret_post'],
        }),
      );
      return;
    }
    if (request.method !== 'POST' || request.url !== '/token') {
      response.writeHead(404).end();
      return;
    }
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const tokenRequest = {
        form: new URLSearchParams(Buffer.concat(chunks).toString('utf8')),
        number: requests.length + 1,
      };
      requests.push(tokenRequest);
      // The broker may have given up on this request by the time the script answers.
      response.on('error', () => {});
      current(tokenRequest).then(
        (answer) => {
          if (response.destroyed) return;
          response.writeHead(answer.status, { 'content-type': 'application/json', ...answer.headers });
          response.end(JSON.stringify(answer.body));
        },
        () => response.destroy(),
      );
    });
  });
  server.on('secureConnection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  const port = await listenOnLoopback(server);
  return {
    wellKnownUrl: `https://localhost:${port}/.well-known/openid-configuration`,
    /** What discovery names: on another host than the issuer, so a client needs it approved. */
    tokenEndpoint: `https://127.0.0.1:${port}/token`,
    /** Every token request that reached the provider, in order. */
    tokenRequests: (): readonly ScriptedTokenRequest[] => requests,
    answerWith(next: TokenScript): void {
      current = next;
    },
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export type ScriptedIdp = Awaited<ReturnType<typeof startScriptedIdp>>;
