import { parseArgs, type ParseArgsConfig } from 'node:util';

type Options = NonNullable<ParseArgsConfig['options']>;
type Values<O extends Options> = ReturnType<typeof parseArgs<{ options: O; strict: true }>>['values'];

/**
 * Strict flag parsing for the data tools, with --help. Returns the flags, or the exit code when the tool should
 * stop here: 0 after printing the usage for --help, 2 after a usage error (printed with the usage).
 */
export function parseCommandLine<O extends Options>(argv: string[], options: O, usage: string): Values<O> | number {
  if (argv.includes('--help')) {
    console.log(usage);
    return 0;
  }
  try {
    return parseArgs({ args: argv, options, strict: true }).values as Values<O>;
  } catch (error) {
    console.error(`${(error as Error).message}\n${usage}`);
    return 2;
  }
}
