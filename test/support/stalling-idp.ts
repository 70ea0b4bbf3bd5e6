import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { listenOnLoopback } from '../../lambdas/local/listen.js';
import { loadTestTls } from './tls.js';

/**
 * An identity provider whose discovery works but whose token endpoint never answers, for timeouts.
 * Its sockets are destroyed on close so the test process can exit.
 */
export async function startStallingIdp(): Promise<{ wellKnownUrl: string; close(): Promise<void> }> {
  const { key, cert } = loadTestTls();
  const sockets = new Set<import('node:net').Socket>();
  const server: Server = createServer({ key, cert }, (request, response) => {
    const { port } = server.address() as AddressInfo;
    if (request.url === '/.well-known/openid-configuration') {
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(
        JSON.stringify({ issuer: `https://localhost:${port}`, token_endpoint: `https://127.0.0.1:${port}/token` }),
      );
    }
    // Anything else is left hanging.
  });
  server.on('secureConnection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  const port = await listenOnLoopback(server);
  return {
    wellKnownUrl: `https://localhost:${port}/.well-known/openid-configuration`,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
