import { stat } from 'node:fs/promises';
import { runCommand } from '../host/command.js';

/** Apparent size (what `ls` shows) and allocated size (what the disk holds). */
export interface Usage {
  apparentBytes: number;
  allocatedBytes: number;
}

export async function fileUsage(file: string): Promise<Usage> {
  const st = await stat(file);
  return { apparentBytes: st.size, allocatedBytes: st.blocks * 512 };
}

/** Usage of a directory tree, by `du` (hard links counted once). */
export async function diskUsage(dir: string): Promise<Usage> {
  const du = async (extra: string[]) => {
    const { stdout } = await runCommand('du', ['-s', '--block-size=1', ...extra, dir]);
    return Number(stdout.split(/\s/)[0]);
  };
  const [apparentBytes, allocatedBytes] = await Promise.all([du(['--apparent-size']), du([])]);
  return { apparentBytes, allocatedBytes };
}
