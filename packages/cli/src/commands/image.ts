import { dataDir, discardSnapshotsOf, ImageStore, imagePaths, SandboxManager } from '@aiva/node';
import type { Command } from 'commander';
import { BuildProgress } from '../build-progress.js';
import { codeInterpreterDir, envdDir, mcpGatewayDir, recipesDir } from '../install-paths.js';
import { interruptSignal } from '../interrupt.js';
import { formatBytes, formatTable } from '../table.js';

export function openImageStore(): ImageStore {
  return new ImageStore({ home: dataDir(), recipesDir, envdDir, codeInterpreterDir, mcpGatewayDir });
}

export function registerImageCommands(program: Command): void {
  const image = program
    .command('image')
    .description('sandbox images: templates and the microVM guest kernel');

  image
    .command('build')
    .description('build a template (and the guest kernel) from its recipe in images/, reusing cached layers')
    .argument('[name]', 'template name (a directory of images/)', 'base')
    .option('-v, --verbose', 'print the output of the build tools')
    .option('--no-kernel', 'skip the microVM guest kernel')
    .action(async (name: string, opts: { verbose?: boolean; kernel: boolean }) => {
      const store = openImageStore();
      const progress = new BuildProgress(process.stderr, opts.verbose);
      const signal = interruptSignal(() => progress.close());
      const started = performance.now();
      try {
        process.stderr.write(`Building template ${name} in ${store.paths.root}\n`);
        let t = await store.ensureTemplate(name, { reporter: progress, signal });
        // The kernel and the ext4 disk are what microVMs need; containers use the layers.
        if (opts.kernel) {
          await store.ensureKernel({ reporter: progress, signal });
          t = await store.ensureDisk(t, { reporter: progress, signal });
        }
        progress.close();
        process.stderr.write(
          `Template ${name} ${t.hash.slice(0, 12)} ready in ${((performance.now() - started) / 1000).toFixed(1)} s: ${t.disk}\n`,
        );
      } catch (e) {
        progress.close();
        if (signal.aborted) {
          process.exitCode = 130;
          throw new Error(`building ${name} was interrupted; nothing partial was kept`);
        }
        throw new Error(`building ${name}: ${(e as Error).message}`);
      }
    });

  image
    .command('ls')
    .description('list cached images with their sizes and recipe hashes')
    .option('-a, --all', 'also list the layers images are made of')
    .option('--json', 'print JSON')
    .action(async (opts: { all?: boolean; json?: boolean }) => {
      const items = (await openImageStore().list()).filter((a) => opts.all || a.kind !== 'layer');
      if (opts.json) {
        console.log(JSON.stringify(items, null, 2));
        return;
      }
      const rows = items.map((a) => [
        a.name,
        a.kind,
        a.hash.slice(0, 12),
        a.recipeHash?.slice(0, 12) ?? '-',
        formatBytes(a.apparentBytes),
        formatBytes(a.allocatedBytes),
        a.createdAt.replace(/\.\d+Z$/, 'Z'),
        a.kind === 'layer' ? (a.usedBy?.join(',') ?? '') : a.current ? 'current' : 'stale',
      ]);
      console.log(
        formatTable(['name', 'kind', 'hash', 'recipe', 'size', 'on disk', 'created', 'status'], rows),
      );
    });

  image
    .command('rm')
    .description('remove cached images by name (base, kernel) or hash prefix, and layers nothing else uses')
    .argument('<ref...>', 'names or hash prefixes (at least 6 hex digits)')
    .action(async (refs: string[]) => {
      const store = openImageStore();
      // Images that sandboxes run from, or checkpoints were saved over, stay.
      const inUse = await SandboxManager.imagesInUse(dataDir());
      for (const ref of refs) {
        const removed = await store.remove(ref, { inUse });
        for (const a of removed) console.log(`removed ${a.kind} ${a.name} ${a.hash.slice(0, 12)}`);
        // The VM snapshots made from them are of no use any more.
        const hashes = new Set(removed.map((a) => a.hash));
        for (const s of await discardSnapshotsOf(imagePaths(dataDir()).snapshots, hashes)) {
          console.log(`removed VM snapshot ${s}`);
        }
      }
    });
}
