/**
 * `node:https` for the Lambda bundle, for the reason given in node-http.ts: importing node:https as an ES
 * module loads node:http's facade too.
 */
const https = process.getBuiltinModule('node:https');

export default https;
export const { Agent, Server, createServer, get, request, globalAgent } = https;
