import { createServer } from 'node:https';
import type { FunctionUrlEvent, FunctionUrlResult } from '../../lambdas/entry/jwks.js';
import { listenOnLoopback } from '../../lambdas/local/listen.js';

export interface LocalJwksServer {
  /** `https://localhost:<port>/`: the function URL's stand-in, with its trailing slash. */
  baseUrl: string;
  /** Requests received, whatever their answer. */
  requests(): number;
  close(): Promise<void>;
}

/**
 * The hosted JWKS function behind https with the test CA, as a Function URL serves it: each request becomes a
 * payload-2.0 event for the handler `current()` returns at that moment, so a test can redeploy between requests.
 */
export async function startJwksServer(
  tls: { key: string; cert: string },
  current: () => (event: FunctionUrlEvent) => Promise<FunctionUrlResult>,
): Promise<LocalJwksServer> {
  let requests = 0;
  const server = createServer({ key: tls.key, cert: tls.cert }, (req, res) => {
    requests += 1;
    const event: FunctionUrlEvent = {
      rawPath: new URL(req.url ?? '/', 'https://localhost').pathname,
      requestContext: { http: { method: req.method ?? 'GET' } },
    };
    current()(event).then(
      (result) => {
        res.writeHead(result.statusCode, result.headers);
        res.end(result.body);
      },
      () => {
        res.writeHead(502);
        res.end();
      },
    );
  });
  const port = await listenOnLoopback(server);
  return {
    baseUrl: `https://localhost:${port}/`,
    requests: () => requests,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
