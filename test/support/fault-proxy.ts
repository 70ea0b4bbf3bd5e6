/**
 * A programmable TLS reverse proxy in front of a `LocalOidcServer`, for injecting faults into discovery and
 * the token endpoint while everything else stays real.
 *
 * Like the server it fronts, it listens on 127.0.0.1 with the test certificate (test/support/tls.ts) and
 * serves both names: the issuer is `https://localhost:<proxyPort>`, the advertised token endpoint
 * `https://127.0.0.1:<proxyPort>/token`, so the issuer and token hosts still differ as with Cognito. The
 * upstream discovery document is rewritten accordingly (`issuer`, `token_endpoint`, and any other URL on the
 * upstream's origins, e.g. `jwks_uri`, now name the proxy). Everything is forwarded over TLS to the upstream,
 * whose certificate is verified against the test CA that NODE_EXTRA_CA_CERTS makes trusted.
 *
 * Two routes can be programmed: `discovery` (`/.well-known/openid-configuration` and
 * `/.well-known/oauth-authorization-server`) and `token` (`/token`). Other paths are always forwarded.
 * Each route has a queue of one-shot faults, consumed one per request, and a sticky default used when the
 * queue is empty (initially `'pass'`):
 *
 * ```ts
 * const proxy = await startFaultProxy(oidc);
 * proxy.next('token', { status: 503, headers: { 'retry-after': '1' } }, 'reset'); // the next two requests
 * proxy.always('discovery', rewrite((doc) => ({ ...doc, issuer: 'https://elsewhere.example' })));
 * proxy.always('token', json({ access_token: 'x', token_type: 'mac', expires_in: 3600 }));
 * proxy.reset(); // back to pass-through, queues emptied, counters zeroed
 * ```
 *
 * Faults (see `Fault`): `'pass'`, `{ status, body?, headers? }`, `'hang'`, `'reset'`, `'garbage'`,
 * `json(body)`, `delay(ms, then?)` and `rewrite(edit)`.
 *
 * Counters: `received(route)` counts requests that reached the proxy on a route, whatever it answered;
 * `forwarded(route)` counts those it sent on to the upstream. The upstream's own `tokenRequests()` counts too.
 *
 * Hung requests are kept open until `reset()` or `close()` destroys their sockets; `close()` also ends every
 * other connection and pending delay, so a test process never waits on the proxy.
 */
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { Agent, createServer, request as httpsRequest, type Server } from 'node:https';
import { isIP, Server as NetServer, type Socket } from 'node:net';
import { listenOnLoopback } from '../../lambdas/local/listen.js';
import type { LocalOidcServer } from '../../lambdas/local/oidc-server.js';
import { loadTestTls } from './tls.js';

export type FaultRoute = 'discovery' | 'token';

export type JsonObject = Record<string, unknown>;

/** An HTTP answer of the test's choice instead of the upstream's. */
export interface StatusFault {
  status: number;
  /**
   * A string is sent as is (`text/plain` unless `headers` name a content-type); anything else is sent as
   * JSON (`application/json`). Absent: an empty body.
   */
  body?: unknown;
  /** Extra response headers, e.g. `{ 'retry-after': '2' }`; a `content-type` here wins. */
  headers?: Record<string, string>;
}

export type Fault =
  /** Forward to the upstream (the discovery document rewritten to name the proxy). */
  | 'pass'
  /** Never answer; the socket is destroyed by `reset()` or `close()` (or when the client gives up). */
  | 'hang'
  /** Reset the connection (TCP RST) as soon as the request arrives, without answering. */
  | 'reset'
  /** 200 with an HTML error page (`text/html`), as a misconfigured gateway or captive portal answers. */
  | 'garbage'
  | StatusFault
  /** 200 `application/json` with this body (made with `json(body)`). */
  | { json: unknown }
  /** Wait, then apply `then` (default `'pass'`); nothing happens if the client went away meanwhile. */
  | { delayMs: number; then?: Fault }
  /**
   * Forward, then replace the upstream's JSON object body (the discovery document after the proxy's own
   * rewrite) with what `edit` returns, keeping the upstream's status. Made with `rewrite(edit)`.
   */
  | { rewrite: (body: JsonObject) => unknown };

/** 200 `application/json` with `body` (e.g. an invalid token response, or a multi-megabyte one). */
export function json(body: unknown): Fault {
  return { json: body };
}

/** Waits `ms`, then applies `then` (by default forwards to the upstream). */
export function delay(ms: number, then: Fault = 'pass'): Fault {
  return { delayMs: ms, then };
}

/**
 * Forwards, then sends what `edit` makes of the upstream's JSON object body, e.g. a discovery document
 * with a wrong issuer or an http:// token_endpoint, or a real token response with a bad `token_type`.
 */
export function rewrite(edit: (body: JsonObject) => unknown): Fault {
  return { rewrite: edit };
}

export interface FaultProxy {
  /** `https://localhost:<proxyPort>` */
  issuer: string;
  /** `https://localhost:<proxyPort>/.well-known/openid-configuration`: what a client config's wellKnownUrl names. */
  wellKnownUrl: string;
  /** `https://127.0.0.1:<proxyPort>/token`, as the rewritten discovery document advertises it. */
  tokenEndpoint: string;
  /** Queues one-shot faults for the next requests on `route`, after any already queued. */
  next(route: FaultRoute, ...faults: Fault[]): void;
  /** Sets the fault used on `route` whenever its queue is empty (initially `'pass'`). */
  always(route: FaultRoute, fault: Fault): void;
  /** Queued one-shot faults on `route` not used yet. */
  pending(route: FaultRoute): number;
  /** Requests that reached the proxy on `route`, whatever it did with them. */
  received(route: FaultRoute): number;
  /** Requests on `route` that the proxy sent on to the upstream. */
  forwarded(route: FaultRoute): number;
  /** Back to pass-through: queues emptied, defaults `'pass'`, counters zeroed, hung requests' sockets destroyed. */
  reset(): void;
  close(): Promise<void>;
}

const discoveryPaths = new Set(['/.well-known/openid-configuration', '/.well-known/oauth-authorization-server']);
const tokenPath = '/token';
const hopByHopHeaders = [
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
];
const garbagePage =
  '<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>' +
  '<body><h1>502 Bad Gateway</h1><p>The upstream server is temporarily unavailable.</p></body></html>\n';

interface RouteState {
  queue: Fault[];
  sticky: Fault;
  received: number;
  forwarded: number;
}

/** Starts a proxy on a free port of 127.0.0.1 in front of `upstream` (an https `LocalOidcServer`). */
export async function startFaultProxy(
  upstream: Pick<LocalOidcServer, 'issuer' | 'tokenEndpoint'>,
): Promise<FaultProxy> {
  const upstreamIssuer = new URL(upstream.issuer);
  if (upstreamIssuer.protocol !== 'https:') throw new TypeError('the fault proxy fronts an https LocalOidcServer');
  const upstreamPort = Number(upstreamIssuer.port);
  const upstreamOrigins = [upstreamIssuer.origin, new URL(upstream.tokenEndpoint).origin];
  const { key, cert } = loadTestTls();

  const routes: Record<FaultRoute, RouteState> = { discovery: freshRoute(), token: freshRoute() };
  const agent = new Agent({ keepAlive: true });
  /** Raw TCP sockets by remote address: the TLS socket's own handle cannot send a reset. */
  const tcpSockets = new Map<string, Socket>();
  const hung = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();

  let proxyOrigins: string[] = [];
  let issuer = '';
  let tokenEndpoint = '';

  const apply = (fault: Fault, route: FaultRoute, req: IncomingMessage, res: ServerResponse): void => {
    if (fault === 'pass') {
      forward(route, req, res);
    } else if (fault === 'hang') {
      hung.add(req.socket);
      req.socket.once('close', () => hung.delete(req.socket));
      req.resume();
    } else if (fault === 'reset') {
      tcpSockets.get(remoteKey(req.socket))?.resetAndDestroy();
      req.socket.destroy();
    } else if (fault === 'garbage') {
      answer(req, res, 200, { 'content-type': 'text/html; charset=utf-8' }, garbagePage);
    } else if ('status' in fault) {
      answerStatus(req, res, fault);
    } else if ('json' in fault) {
      answer(req, res, 200, { 'content-type': 'application/json' }, JSON.stringify(fault.json) ?? '');
    } else if ('delayMs' in fault) {
      const timer = setTimeout(() => {
        timers.delete(timer);
        if (!res.destroyed && !req.socket.destroyed) apply(fault.then ?? 'pass', route, req, res);
      }, fault.delayMs);
      timers.add(timer);
    } else {
      forward(route, req, res, fault.rewrite);
    }
  };

  const forward = (
    route: FaultRoute | undefined,
    req: IncomingMessage,
    res: ServerResponse,
    edit?: (body: JsonObject) => unknown,
  ): void => {
    const hostname = requestHostname(req);
    const rewriting = route === 'discovery' || edit !== undefined;
    const headers: OutgoingHttpHeaders = { ...withoutHopByHop(req.headers), host: `${hostname}:${upstreamPort}` };
    if (rewriting) {
      // The body is read and re-sent: it must come uncompressed and whole.
      for (const name of ['accept-encoding', 'if-none-match', 'if-modified-since']) delete headers[name];
    }
    if (route !== undefined) routes[route].forwarded += 1;
    const outgoing = httpsRequest(
      {
        // Always the loopback address the upstream listens on; the name the client used is kept for
        // SNI and certificate verification (the test certificate covers localhost and 127.0.0.1).
        host: '127.0.0.1',
        port: upstreamPort,
        servername: isIP(hostname) === 0 ? hostname : undefined,
        method: req.method,
        path: req.url,
        headers,
        agent,
      },
      (incoming) => {
        const status = incoming.statusCode ?? 502;
        const responseHeaders = withoutHopByHop(incoming.headers);
        if (!rewriting || (route === 'discovery' && edit === undefined && status !== 200)) {
          res.writeHead(status, responseHeaders);
          incoming.pipe(res);
          return;
        }
        readAll(incoming).then(
          (raw) => {
            const body = rewrittenBody(raw, route === 'discovery' && status === 200, edit);
            if (body === undefined) {
              res.writeHead(status, responseHeaders);
              res.end(raw);
              return;
            }
            for (const name of ['content-length', 'content-encoding', 'etag', 'last-modified']) {
              delete responseHeaders[name];
            }
            responseHeaders['content-type'] = 'application/json; charset=utf-8';
            responseHeaders['content-length'] = String(Buffer.byteLength(body));
            res.writeHead(status, responseHeaders);
            res.end(body);
          },
          () => res.destroy(),
        );
      },
    );
    outgoing.on('error', (error: Error & { code?: string }) => {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      const message = `fault proxy: the upstream request failed (${error.code ?? error.name})\n`;
      res.writeHead(502, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(message) });
      res.end(message);
    });
    res.on('close', () => {
      if (!res.writableFinished) outgoing.destroy();
    });
    req.pipe(outgoing);
  };

  /** The discovery document names the proxy instead of the upstream; then the test's edit, if any. */
  const rewrittenBody = (
    raw: Buffer,
    isDiscovery: boolean,
    edit: ((body: JsonObject) => unknown) | undefined,
  ): string | undefined => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw.toString('utf8'));
    } catch {
      return undefined;
    }
    if (!isJsonObject(parsed)) return undefined;
    let body: unknown = parsed;
    if (isDiscovery) {
      const moved = replaceOrigins(parsed, upstreamOrigins, proxyOrigins) as JsonObject;
      body = { ...moved, issuer, token_endpoint: tokenEndpoint };
    }
    if (edit !== undefined && isJsonObject(body)) body = edit(body);
    return JSON.stringify(body) ?? '';
  };

  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const route = routeOf(req);
    if (route === undefined) {
      forward(undefined, req, res);
      return;
    }
    const state = routes[route];
    state.received += 1;
    apply(state.queue.shift() ?? state.sticky, route, req, res);
  };

  const server: Server = createServer({ key, cert }, onRequest);
  server.on('connection', (socket: Socket) => {
    const id = remoteKey(socket);
    tcpSockets.set(id, socket);
    socket.once('close', () => {
      if (tcpSockets.get(id) === socket) tcpSockets.delete(id);
    });
  });
  // A client that gives up mid-handshake is no concern of the test's.
  server.on('tlsClientError', () => {});
  const port = await listenOnLoopback(server);
  issuer = `https://localhost:${port}`;
  tokenEndpoint = `https://127.0.0.1:${port}${tokenPath}`;
  proxyOrigins = upstreamOrigins.map((origin) => {
    const url = new URL(origin);
    url.port = String(port);
    return url.origin;
  });

  const destroyHung = () => {
    for (const socket of hung) socket.destroy();
    hung.clear();
  };

  return {
    issuer,
    wellKnownUrl: `${issuer}/.well-known/openid-configuration`,
    tokenEndpoint,
    next(route, ...faults) {
      routes[route].queue.push(...faults);
    },
    always(route, fault) {
      routes[route].sticky = fault;
    },
    pending: (route) => routes[route].queue.length,
    received: (route) => routes[route].received,
    forwarded: (route) => routes[route].forwarded,
    reset() {
      routes.discovery = freshRoute();
      routes.token = freshRoute();
      destroyHung();
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        for (const timer of timers) clearTimeout(timer);
        timers.clear();
        destroyHung();
        for (const socket of tcpSockets.values()) socket.destroy();
        agent.destroy();
        // Every socket is destroyed above, so the listener only has to stop. http's own close() first walks its
        // connection list, which a connection a fault tore down can leave holding a freed socket: the walk
        // throws and the server stays open (Node 22), so the plain net close is used.
        NetServer.prototype.close.call(server, (error) => (error ? reject(error) : resolve()));
      }),
  };
}

function freshRoute(): RouteState {
  return { queue: [], sticky: 'pass', received: 0, forwarded: 0 };
}

function routeOf(req: IncomingMessage): FaultRoute | undefined {
  const { pathname } = new URL(req.url ?? '/', 'https://placeholder');
  if (discoveryPaths.has(pathname)) return 'discovery';
  if (pathname === tokenPath) return 'token';
  return undefined;
}

/** The host name the client addressed (`localhost` or `127.0.0.1`), without the port. */
function requestHostname(req: IncomingMessage): string {
  const host = req.headers.host;
  if (host === undefined || host === '') return 'localhost';
  try {
    const { hostname } = new URL(`https://${host}`);
    return hostname.startsWith('[') ? hostname.slice(1, -1) : hostname;
  } catch {
    return 'localhost';
  }
}

function remoteKey(socket: Socket): string {
  return `${socket.remoteAddress}:${socket.remotePort}`;
}

function answerStatus(req: IncomingMessage, res: ServerResponse, fault: StatusFault): void {
  const headers: Record<string, string> = {};
  let body = '';
  if (typeof fault.body === 'string') {
    headers['content-type'] = 'text/plain; charset=utf-8';
    body = fault.body;
  } else if (fault.body !== undefined) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(fault.body) ?? '';
  }
  for (const [name, value] of Object.entries(fault.headers ?? {})) headers[name.toLowerCase()] = value;
  answer(req, res, fault.status, headers, body);
}

function answer(
  req: IncomingMessage,
  res: ServerResponse,
  status: number,
  headers: Record<string, string>,
  body: string,
): void {
  req.resume();
  res.writeHead(status, { ...headers, 'content-length': String(Buffer.byteLength(body)) });
  res.end(body);
}

function withoutHopByHop(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const copy: OutgoingHttpHeaders = { ...headers };
  const listed = typeof headers.connection === 'string' ? headers.connection.split(',') : [];
  for (const name of [...hopByHopHeaders, ...listed.map((n) => n.trim().toLowerCase())]) delete copy[name];
  return copy;
}

function replaceOrigins(value: unknown, from: string[], to: string[]): unknown {
  if (typeof value === 'string') {
    for (const [index, origin] of from.entries()) {
      if (value === origin || value.startsWith(`${origin}/`)) return `${to[index]}${value.slice(origin.length)}`;
    }
    return value;
  }
  if (Array.isArray(value)) return value.map((item) => replaceOrigins(item, from, to));
  if (isJsonObject(value)) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, replaceOrigins(v, from, to)]));
  }
  return value;
}

async function readAll(stream: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
