import type { IncomingMessage } from 'node:http';

/** Why a request is refused before it reaches the broker, as an OAuth-style error. */
export interface Refusal {
  status: 400 | 403;
  error: 'invalid_request' | 'access_denied';
  description: string;
}

/**
 * Listening on loopback does not keep web pages out: a page on a DNS name that rebinds to 127.0.0.1 reaches
 * the server with that name as Host, and a cross-site request from any page carries Origin. The server's
 * callers (curl, SDKs, tests) send neither, so such requests are refused before anything else is read.
 * Node keeps only the first of duplicated Host and Content-Type headers; the raw lists are checked here so
 * that what the broker sees is all the client sent.
 */
export function refusalOf(request: IncomingMessage, port: number): Refusal | undefined {
  const headers = request.headersDistinct;
  const hosts = headers.host ?? [];
  if (hosts.length !== 1) {
    return { status: 400, error: 'invalid_request', description: 'the request must carry exactly one Host header' };
  }
  const allowedHosts = [`127.0.0.1:${port}`, `localhost:${port}`];
  if (!allowedHosts.includes(hosts[0]?.toLowerCase() ?? '')) {
    return {
      status: 403,
      error: 'access_denied',
      description: `the local server answers only to http://127.0.0.1:${port} and http://localhost:${port}`,
    };
  }
  if (headers.origin !== undefined) {
    return {
      status: 403,
      error: 'access_denied',
      description: 'requests from web pages (with an Origin header) are refused',
    };
  }
  if ((headers['content-type']?.length ?? 0) > 1) {
    return {
      status: 400,
      error: 'invalid_request',
      description: 'the request carries more than one Content-Type header',
    };
  }
  return undefined;
}
