import { HelperError, runHelper } from '../native.js';

/**
 * File metadata of the e2b SDK (`files.write(…, { metadata })`), kept as extended
 * attributes `user.e2b.<key>` on the file itself, so it follows the file when it is
 * renamed and goes away with it.
 */
export class MetadataStore {
  constructor(private readonly helper: string) {}

  /** The metadata of each path, in order (empty for paths without any, or unreadable). */
  async read(paths: string[]): Promise<Record<string, string>[]> {
    const out: Record<string, string>[] = [];
    // Keep each command line well below ARG_MAX.
    for (let i = 0; i < paths.length; i += 256) {
      const batch = paths.slice(i, i + 256);
      const text = await runHelper(this.helper, ['xattr-get', ...batch]);
      const lines = text.split('\n');
      let at = 0;
      for (let k = 0; k < batch.length; k++) {
        const count = Number(lines[at++] ?? '0');
        const md: Record<string, string> = {};
        for (let j = 0; j < count; j++) {
          const [key = '', value = ''] = (lines[at++] ?? '').split('\t');
          md[Buffer.from(key, 'hex').toString('utf8')] = Buffer.from(value, 'hex').toString('utf8');
        }
        out.push(md);
      }
    }
    return out;
  }

  /** Replaces the metadata of `path` with `metadata`. */
  async replace(path: string, metadata: Record<string, string>): Promise<void> {
    const pairs = Object.entries(metadata).map(
      ([k, v]) => `${Buffer.from(k, 'utf8').toString('hex')}=${Buffer.from(v, 'utf8').toString('hex')}`,
    );
    try {
      await runHelper(this.helper, ['xattr-set', path, ...pairs]);
    } catch (e) {
      throw new HelperError(
        `cannot set metadata of ${path}: ${(e as Error).message}`,
        (e as HelperError).code,
      );
    }
  }
}
