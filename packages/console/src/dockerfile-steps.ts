import { DockerfileParser } from 'dockerfile-ast';

/** A build step as E2B's template API takes it (`POST /v2/templates/{id}/builds/{buildID}`). */
export interface BuildStep {
  type: string;
  args: string[];
}

/** A Dockerfile as the template API's build start: the base, the steps, the start command. */
export interface DockerfileBuild {
  /** The FROM line's image or template name. */
  base: string;
  steps: BuildStep[];
  startCmd?: string;
  readyCmd?: string;
}

/**
 * Reads a Dockerfile (with dockerfile-ast, the parser the e2b SDK's `fromDockerfile` uses)
 * into the steps the SDK would send: the steps run as root in `/`, and the template ends
 * as `user` in `/home/user` unless the file says otherwise; CMD/ENTRYPOINT is the start
 * command. COPY and ADD need a build context, which a browser form has not: they are
 * refused, as is any instruction the builder does not run.
 */
export function dockerfileBuild(text: string): DockerfileBuild {
  const instructions = DockerfileParser.parse(text).getInstructions();
  const froms = instructions.filter((i) => i.getKeyword() === 'FROM');
  if (froms.length === 0) throw new Error('the Dockerfile has no FROM line');
  if (froms.length > 1) throw new Error('multi-stage Dockerfiles (more than one FROM) are not supported');
  const base = froms[0]?.getArguments()[0]?.getValue();
  if (!base) throw new Error('the FROM line names no image or template');
  const steps: BuildStep[] = [
    { type: 'USER', args: ['root'] },
    { type: 'WORKDIR', args: ['/'] },
  ];
  let userSet = false;
  let workdirSet = false;
  let startCmd: string | undefined;
  for (const instruction of instructions) {
    const keyword = instruction.getKeyword();
    const args = instruction.getArguments().map((a) => a.getValue());
    const line = instruction.getRange().start.line + 1;
    switch (keyword) {
      case 'FROM':
      case 'EXPOSE':
      case 'VOLUME':
        break;
      case 'RUN':
        if (args.length === 0) throw new Error(`line ${line}: RUN has no command`);
        steps.push({ type: 'RUN', args: [args.join(' ')] });
        break;
      case 'WORKDIR':
        if (!args[0]) throw new Error(`line ${line}: WORKDIR has no path`);
        steps.push({ type: 'WORKDIR', args: [args[0]] });
        workdirSet = true;
        break;
      case 'USER':
        if (!args[0]) throw new Error(`line ${line}: USER has no user`);
        steps.push({ type: 'USER', args: [args[0]] });
        userSet = true;
        break;
      case 'ENV':
      case 'ARG': {
        const env = envOf(keyword, args);
        if (env.length === 0) throw new Error(`line ${line}: ${keyword} sets nothing`);
        steps.push({ type: 'ENV', args: env });
        break;
      }
      case 'CMD':
      case 'ENTRYPOINT':
        startCmd = commandOf(args.join(' '));
        break;
      case 'COPY':
      case 'ADD':
        throw new Error(
          `line ${line}: ${keyword} needs files from a build context, which this form has not: build it with \`aiva template build <dir>\``,
        );
      default:
        throw new Error(
          `line ${line}: ${keyword} is not supported (FROM, RUN, ENV, ARG, WORKDIR, USER, CMD are)`,
        );
    }
  }
  if (!userSet) steps.push({ type: 'USER', args: ['user'] });
  if (!workdirSet) steps.push({ type: 'WORKDIR', args: ['/home/user'] });
  // As the SDK: a start command is taken to be ready after 20 s.
  return { base, steps, ...(startCmd ? { startCmd, readyCmd: 'sleep 20' } : {}) };
}

/** `KEY=value …`, or `KEY value` (one pair); an ARG without a value is empty. */
function envOf(keyword: string, args: string[]): string[] {
  const [first, second] = args;
  if (args.length === 2 && first && second !== undefined && !(first.includes('=') && second.includes('=')))
    return [first, second];
  const out: string[] = [];
  for (const a of args) {
    const eq = a.indexOf('=');
    if (eq > 0) out.push(a.slice(0, eq), a.slice(eq + 1));
    else if (keyword === 'ARG' && a.trim()) out.push(a.trim(), '');
  }
  return out;
}

/** The exec form (`["a", "b"]`) as one command line; the shell form as it is. */
function commandOf(text: string): string {
  try {
    const parsed: unknown = JSON.parse(text);
    if (Array.isArray(parsed)) return parsed.join(' ');
  } catch {
    // The shell form.
  }
  return text;
}
