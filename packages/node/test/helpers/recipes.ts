import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { BuildReporter } from '../../src/index.js';
import { repoImages } from './repo.js';
import { tempDir } from './temp-dir.js';

/**
 * A recipes directory holding the repository's guest files and kernel recipe plus
 * `name`, made from the base recipe with `changes` applied.
 */
export async function recipesWith(name: string, changes: Record<string, unknown>): Promise<string> {
  const dir = await tempDir('aiva-recipes-');
  await mkdir(join(dir, 'guest'));
  await mkdir(join(dir, 'kernel'));
  await mkdir(join(dir, name));
  await copyFile(join(repoImages, 'guest', 'init'), join(dir, 'guest', 'init'));
  await copyFile(join(repoImages, 'kernel', 'init'), join(dir, 'kernel', 'init'));
  await copyFile(join(repoImages, 'kernel', 'recipe.json'), join(dir, 'kernel', 'recipe.json'));
  const base = JSON.parse(await readFile(join(repoImages, 'base', 'recipe.json'), 'utf8'));
  await writeFile(join(dir, name, 'recipe.json'), JSON.stringify({ ...base, name, ...changes }, null, 2));
  return dir;
}

/** A reporter that remembers what it was told. */
export class RecordingReporter implements BuildReporter {
  steps: { id: string; state: 'running' | 'cached' }[] = [];
  lines: string[] = [];
  finishedSteps: string[] = [];
  step(id: string, _title: string, state: 'running' | 'cached'): void {
    this.steps.push({ id, state });
  }
  progress(): void {}
  output(_id: string, line: string): void {
    this.lines.push(line);
  }
  finished(id: string): void {
    this.finishedSteps.push(id);
  }
  stateOf(id: string): string | undefined {
    return this.steps.find((s) => s.id === id)?.state;
  }
}
