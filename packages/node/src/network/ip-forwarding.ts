import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runCommand } from '../host/command.js';

/**
 * IPv4 forwarding, which sandboxes need to reach the internet through the host's NAT.
 * aiva turns it on while it has sandboxes and puts the previous value back when it has
 * none. The previous value is kept in a file under /run (it does not outlive a reboot,
 * nor does the setting), so that a node that crashed with forwarding on leaves the next
 * node enough to restore it.
 */
export class IpForwarding {
  private readonly saved: string;

  constructor(stateDir: string) {
    this.saved = join(stateDir, 'ip_forward.saved');
  }

  static async current(): Promise<0 | 1> {
    const v = (await readFile('/proc/sys/net/ipv4/ip_forward', 'utf8')).trim();
    return v === '1' ? 1 : 0;
  }

  /** The value before aiva changed it, if aiva changed it. */
  async savedValue(): Promise<0 | 1 | undefined> {
    const v = (await readFile(this.saved, 'utf8').catch(() => '')).trim();
    return v === '0' || v === '1' ? (Number(v) as 0 | 1) : undefined;
  }

  /** The host's own setting, as it was before aiva (the saved value, or the current one). */
  async hostSetting(): Promise<0 | 1> {
    return (await this.savedValue()) ?? (await IpForwarding.current());
  }

  async enable(): Promise<void> {
    if ((await this.savedValue()) === undefined) {
      const now = await IpForwarding.current();
      if (now === 1) return;
      await writeFile(this.saved, `${now}\n`);
    }
    await runCommand('sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
  }

  /** Puts back what was there before aiva turned forwarding on (nothing, if it did not). */
  async restore(): Promise<void> {
    const before = await this.savedValue();
    if (before === undefined) return;
    await runCommand('sysctl', ['-qw', `net.ipv4.ip_forward=${before}`]);
    await rm(this.saved, { force: true });
  }
}
