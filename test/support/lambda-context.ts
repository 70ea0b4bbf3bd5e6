import { randomBytes } from 'node:crypto';
import type { Context } from 'aws-lambda';
import { apiGatewayAliasName } from '../../lambdas/entry/invoke.js';

export const functionArn = 'arn:aws:lambda:us-east-1:123456789012:function:token-broker';

/** The Lambda context of one invocation of the broker, through `qualifier` (an alias) when given. */
export function lambdaContext(qualifier?: string, logStreamName = 'test'): Context {
  return {
    functionName: 'token-broker',
    functionVersion: '$LATEST',
    invokedFunctionArn: qualifier === undefined ? functionArn : `${functionArn}:${qualifier}`,
    memoryLimitInMB: '256',
    awsRequestId: randomBytes(8).toString('hex'),
    logGroupName: '/aws/lambda/token-broker',
    logStreamName,
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis: () => 15_000,
    done: () => {},
    fail: () => {},
    succeed: () => {},
  };
}

/** The Lambda context of an invocation by API Gateway: through the alias the stack gives it. */
export function apiGatewayContext(logStreamName = 'test'): Context {
  return lambdaContext(apiGatewayAliasName, logStreamName);
}
