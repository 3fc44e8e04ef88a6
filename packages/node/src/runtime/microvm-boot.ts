import type { RuntimeSpec } from './types.js';

/** The guest's MAC address: the same in every sandbox, each sandbox having its own network namespace. */
export const GUEST_MAC = '02:00:00:00:00:01';

export interface BootLayout {
  /** The device holding the template's filesystem. */
  root: string;
  /** A writable device to overlay on a read-only root (VMMs without copy-on-write disks). */
  upper?: string;
  /** What the guest kernel does on reboot: `t` (triple fault) for QEMU, `k` (keyboard controller) for Firecracker. */
  reboot: 't' | 'k';
  /**
   * The TSC frequency, when the guest cannot measure it: under TCG the guest's TSC runs
   * at the host's rate and calibrating it against the emulated PIT fails when the host
   * is busy, leaving the kernel without a clock source (it hangs early in boot).
   */
  tscKhz?: number;
}

/**
 * The guest kernel's command line, shared by the microVM drivers: quiet and fast to boot
 * on a machine without PCI or firmware, with the guest's network settings for aiva's init.
 */
export function kernelCommandLine(spec: RuntimeSpec, layout: BootLayout): string {
  const g = spec.network.guest;
  const args = [
    'console=ttyS0',
    'quiet',
    'panic=-1',
    `reboot=${layout.reboot}`,
    'pci=off',
    '8250.nr_uarts=1',
    'i8042.noaux',
    'i8042.nomux',
    'i8042.nopnp',
    'i8042.dumbkbd',
    'random.trust_cpu=on',
    `root=${layout.root}`,
    layout.upper ? 'ro' : 'rw',
    `aiva.ip=${g.address}/${g.prefix}`,
    `aiva.gw=${g.gateway}`,
    `aiva.hostname=${spec.hostname}`,
  ];
  if (layout.tscKhz) args.push(`tsc_early_khz=${layout.tscKhz}`);
  if (layout.upper) args.push(`aiva.upper=${layout.upper}`);
  if (g.dns) args.push(`aiva.dns=${g.dns}`);
  if (!layout.upper && spec.resources.diskMiB > spec.template.diskSizeMiB) args.push('aiva.resize=1');
  for (const [i, v] of (spec.volumes ?? []).entries()) args.push(`aiva.vol=${i}:${v.path}`);
  return args.join(' ');
}

/** A volume's disk's serial in a microVM: this and its index (the guest's init reads each virtio disk's serial in sysfs). */
export const VOLUME_SERIAL_PREFIX = 'aiva-vol';

/**
 * What a volume's mount path in a microVM may be: it travels on the kernel's command
 * line (`aiva.vol=`), which splits on spaces and holds 2 KiB in all, so printable
 * characters without spaces or quotes, and at most 200 of them.
 */
export const MICROVM_VOLUME_PATH = /^[A-Za-z0-9._@+=,:~/-]{1,200}$/;
