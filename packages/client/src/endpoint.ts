/**
 * Where the client may send a request. A signed request over plain http can be read and replayed by anyone on
 * the path and its answer is a bearer token, so http is allowed only to this machine (the local dev server).
 */
import { printable } from './text.js';

/** localhost, 127.0.0.0/8 and ::1, as a URL's hostname spells them. */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.toLowerCase();
  if (host === 'localhost' || host === '[::1]') return true;
  const octets = host.split('.');
  return (
    octets.length === 4 &&
    octets[0] === '127' &&
    octets.every((octet) => /^\d{1,3}$/.test(octet) && Number(octet) <= 255)
  );
}

/** Why the URL may not be used, or undefined when it may: https anywhere, http only to loopback. */
export function insecureUrlReason(url: URL): string | undefined {
  if (url.protocol === 'https:') return undefined;
  if (url.protocol !== 'http:') return `it is not an http(s) URL (${printable(url.protocol, 20)})`;
  if (isLoopbackHost(url.hostname)) return undefined;
  return `plain http is allowed only to loopback (127.0.0.0/8, ::1, localhost), not ${printable(url.hostname, 100)}; use https`;
}

/** The API's base URL, checked: absolute, https (or http to loopback), no credentials, query or fragment. */
export function parseBaseUrl(baseUrl: unknown): URL {
  const example = 'https://abc123.execute-api.us-east-1.amazonaws.com/v1/';
  if (typeof baseUrl !== 'string' || !URL.canParse(baseUrl)) {
    const shown = typeof baseUrl === 'string' ? JSON.stringify(printable(baseUrl, 100)) : typeof baseUrl;
    throw new TypeError(`baseUrl must be an absolute URL such as ${example} (the ApiUrl output), got ${shown}`);
  }
  const url = new URL(baseUrl);
  const reason = insecureUrlReason(url);
  if (reason !== undefined) throw new TypeError(`baseUrl is refused: ${reason}`);
  if (url.username !== '' || url.password !== '') throw new TypeError('baseUrl must not contain credentials');
  if (url.search !== '' || url.hash !== '') throw new TypeError('baseUrl must not have a query or a fragment');
  return url;
}
