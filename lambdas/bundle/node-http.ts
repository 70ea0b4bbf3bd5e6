/**
 * `node:http` for the Lambda bundle (lib/lambda-bundle.ts aliases it here). Node builds an ES module facade
 * for a built-in by reading every export, and node:http's `WebSocket`, `CloseEvent` and `MessageEvent` are
 * getters that load Node's copy of undici: about 25 ms of every cold start, for classes the broker never uses
 * (node:https and the other built-ins have no such getters).
 * process.getBuiltinModule hands over the CommonJS module without a facade; only the names below are read.
 */
const http = process.getBuiltinModule('node:http');

export default http;
export const {
  METHODS,
  STATUS_CODES,
  Agent,
  ClientRequest,
  IncomingMessage,
  OutgoingMessage,
  Server,
  ServerResponse,
  createServer,
  validateHeaderName,
  validateHeaderValue,
  get,
  request,
  setMaxIdleHTTPParsers,
  maxHeaderSize,
  globalAgent,
} = http;
