import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { type ClientRegistry, ConfigError, type ConfigOptions, parseClientRegistryJson } from '../core/config.js';
import { environmentVariables } from './environment.js';

/**
 * The registry from TOKEN_BROKER_CLIENTS_FILE when set (the deployed function: clients.json in its bundle), else
 * from TOKEN_BROKER_CLIENTS (the local dev server and the tests). Read once, at cold start; its problems are named
 * under the variable or file they were read from.
 */
export function readClientRegistry(
  env: NodeJS.ProcessEnv,
  options: ConfigOptions,
  problems: string[],
): ClientRegistry | undefined {
  const file = env[environmentVariables.clientsFile];
  const fromFile = file !== undefined && file !== '';
  let source: string = environmentVariables.clients;
  let json = env[environmentVariables.clients];
  if (fromFile) {
    const path = resolve(env.LAMBDA_TASK_ROOT || process.cwd(), file);
    source = `${environmentVariables.clientsFile} (${path})`;
    try {
      json = readFileSync(path, 'utf8');
    } catch (error) {
      problems.push(`${source} cannot be read: ${(error as NodeJS.ErrnoException).code ?? 'unknown error'}`);
      return undefined;
    }
    if (json.trim() === '') {
      problems.push(`${source} is empty`);
      return undefined;
    }
  }
  try {
    // The bundled file is cdk.json's registry as synth wrote it: its problems are named as in cdk.json.
    return parseClientRegistryJson(json, source, fromFile ? { ...options, at: 'tokenBroker.clients' } : options);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    const named = (problem: string) => (fromFile && !problem.startsWith(source) ? `${source}: ${problem}` : problem);
    problems.push(...error.problems.map(named));
    return undefined;
  }
}
