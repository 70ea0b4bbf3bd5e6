import { randomBytes } from 'node:crypto';
import type { APIGatewayProxyEvent } from 'aws-lambda';
import { tokenRoute } from '../contract.js';

export interface LocalRequest {
  method: string;
  /** The request path, e.g. /clients/demo/token. */
  path: string;
  headers?: Record<string, string>;
  body?: string | null;
  /** The IAM identity API Gateway would have authenticated; null for an unsigned request. */
  callerArn: string | null;
}

const tokenPath = /^\/clients\/([^/]+)\/token$/;

/** Shapes a request the way API Gateway's REST Lambda proxy integration does, route match included. */
export function apiGatewayEvent(request: LocalRequest): APIGatewayProxyEvent {
  const match = tokenPath.exec(request.path);
  const client = match?.[1] === undefined ? undefined : safeDecode(match[1]);
  const resource = client === undefined ? request.path : tokenRoute;
  return {
    resource,
    path: request.path,
    httpMethod: request.method,
    headers: request.headers ?? {},
    multiValueHeaders: {},
    queryStringParameters: null,
    multiValueQueryStringParameters: null,
    pathParameters: client === undefined ? null : { client },
    stageVariables: null,
    body: request.body ?? null,
    isBase64Encoded: false,
    requestContext: {
      accountId: '000000000000',
      apiId: 'local',
      authorizer: null,
      protocol: 'HTTP/1.1',
      httpMethod: request.method,
      path: request.path,
      stage: 'local',
      requestId: randomBytes(8).toString('hex'),
      requestTimeEpoch: Date.now(),
      resourceId: 'local',
      resourcePath: resource,
      identity: {
        accessKey: null,
        accountId: '000000000000',
        apiKey: null,
        apiKeyId: null,
        caller: null,
        clientCert: null,
        cognitoAuthenticationProvider: null,
        cognitoAuthenticationType: null,
        cognitoIdentityId: null,
        cognitoIdentityPoolId: null,
        principalOrgId: null,
        sourceIp: '127.0.0.1',
        user: null,
        userAgent: request.headers?.['user-agent'] ?? null,
        userArn: request.callerArn,
      },
    },
  };
}

function safeDecode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}
