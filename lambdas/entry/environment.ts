/**
 * The environment variables through which the stack configures the function, and the Powertools service name:
 * the contract's (lambdas/contract.ts), where the runtime settings' variables come from their table.
 */
export { defaultServiceName, environmentVariables, serviceNameVariable } from '../contract.js';
