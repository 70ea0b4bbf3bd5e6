/**
 * Stands in, in the Lambda bundle only, for `semver`: aws-xray-sdk-core (under the Powertools Tracer) loads all
 * of it, 28 KiB, for one version check inside `captureAWS`, its patcher for the AWS SDK v2. The broker uses
 * SDK v3, traced through `captureAWSv3Client`, so that check never runs.
 */
export function gte(): never {
  throw new Error('semver is not part of the Lambda bundle: captureAWS (AWS SDK v2) is not used');
}
