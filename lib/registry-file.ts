import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { Stack, Stage } from 'aws-cdk-lib';
import type { Construct } from 'constructs';
import type { ClientConfig, ClientRegistry } from '../lambdas/core/config.js';
import type { BundledFile } from './handler-function.js';

/*
 * The registry travels in the bundle as this file (Lambda's 4 KB of environment holds about a dozen clients);
 * TOKEN_BROKER_CLIENTS_FILE names it, relative to LAMBDA_TASK_ROOT.
 */
export const registryFileName = 'clients.json';

/** The registry the function runs (its clients.json): without the fields only the deployment uses. */
export function runtimeRegistryOf(clients: ClientRegistry): Record<string, ClientConfig> {
  return Object.fromEntries(
    Object.entries(clients).map(
      ([name, { allowedPrincipals: _principals, adminPrincipals: _admins, secretKmsKeyArn: _key, ...client }]) => [
        name,
        client,
      ],
    ),
  );
}

/**
 * The runtime registry as a file for the bundles, written at synth time into the cloud assembly under a name of
 * its content's hash: a changed registry is a changed file, so a changed bundle and asset hash, and a changed
 * bundling command or options, so CDK's in-process bundling cache never hands one registry's bundle to another.
 * Written only when the stack is bundled (nothing reads it otherwise).
 */
export function stagedRegistryFile(scope: Construct, clients: ClientRegistry): BundledFile {
  const json = JSON.stringify(runtimeRegistryOf(clients));
  const digest = createHash('sha256').update(json).digest('hex').slice(0, 16);
  const assembly = resolve(Stage.of(scope)?.assetOutdir ?? '.');
  const file = join(assembly, 'token-broker-registry', `clients-${digest}.json`);
  if (Stack.of(scope).bundlingRequired) {
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, json);
  }
  return { source: file, name: registryFileName };
}
