import { Command, CommanderError, Help } from 'commander';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../paths.js';
import { registerClassify } from './classify.js';
import { registerEmbed } from './embed.js';
import { registerEval } from './eval.js';
import { registerMetrics } from './metrics.js';
import { registerSearch } from './search.js';
import { registerFinetune } from './finetune.js';
import { registerDemo } from './demo.js';
import { registerBundle } from './bundle.js';
import { registerServe } from './serve.js';

const pkg = JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string };

/** The `setar` command line. */
export function buildProgram(): Command {
  const program = new Command('setar')
    .description('SeTAR: out-of-distribution detection with selective low-rank approximation, for CLIP and Swin V2 on ONNX Runtime')
    .version(pkg.version)
    .showHelpAfterError('(run with --help for usage)')
    // one error prefix for commander's own messages (unknown option, missing value…) and ours
    .configureOutput({ outputError: (str, write) => write(`setar: ${str}`) })
    // a required option says so in --help (inherited by every command registered below)
    .configureHelp({ optionDescription: (o) => (o.mandatory ? `${new Help().optionDescription(o)} (required)` : new Help().optionDescription(o)) });
  registerClassify(program);
  registerEmbed(program);
  registerEval(program);
  registerMetrics(program);
  registerSearch(program);
  registerFinetune(program);
  registerBundle(program);
  registerServe(program);
  registerDemo(program);
  return program;
}

/** Runs the CLI; errors print as one line naming what was wrong (SETAR_DEBUG=1 adds the stack). */
export async function main(argv: readonly string[]): Promise<number> {
  const program = buildProgram().exitOverride();
  try {
    await program.parseAsync([...argv]);
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode;
    const err = e as Error;
    process.stderr.write(`setar: error: ${err.message}\n`);
    if (process.env.SETAR_DEBUG) process.stderr.write(`${err.stack}\n`);
    return 1;
  }
}
