import { execFile } from 'node:child_process';
import { basename } from 'node:path';
import { promisify } from 'node:util';

export const run = promisify(execFile);

/** npm as the current npm run/exec invoked it, so the same version packs; plain `npm` otherwise. */
export function npm(args: string[], cwd: string) {
  const npmCli = process.env.npm_execpath;
  return npmCli !== undefined && basename(npmCli).startsWith('npm-cli')
    ? run(process.execPath, [npmCli, ...args], { cwd })
    : run('npm', args, { cwd });
}
