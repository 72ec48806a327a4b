// Builds the `airlock` command tree. Entry points resolve options here and pass resolved config down.
import { Command, InvalidArgumentError } from 'commander';
import { runDemo } from './commands/demo.js';

function positiveInteger(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n <= 0) throw new InvalidArgumentError('must be a positive integer');
  return n;
}

export function createProgram(): Command {
  const program = new Command('airlock')
    .description('Airlock: split-plane workflow orchestration where your data never leaves your plane unencrypted.')
    .showHelpAfterError();

  program
    .command('demo')
    .description('Encrypt and decrypt a file with ASF1 envelope encryption, and show what the crypto core does.')
    .option('--size <MiB>', 'size of the demo file in MiB', positiveInteger, 64)
    .option('--dir <dir>', 'working directory for the demo files (default: a new temporary directory)')
    .option('--keep', 'keep the demo files afterwards', false)
    .action(async (options: { size: number; dir?: string; keep: boolean }) => {
      await runDemo(options);
    });

  return program;
}
