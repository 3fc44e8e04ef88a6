import { GUEST_MAC, kernelCommandLine, VOLUME_SERIAL_PREFIX } from '../microvm-boot.js';
import type { RuntimeSpec } from '../types.js';

export type Accel = 'kvm' | 'tcg';

export interface QemuFiles {
  /** A path, or `/dev/fdset/N` with `diskFds` (QEMU re-opens the disk after dropping its privileges). */
  disk: string;
  /** Inherited fds of the disk, read-write and read-only, put in fd set 1 (`-add-fd`). */
  diskFds?: [number, number];
  /**
   * Inherited fds of each of `spec.volumes`' images, read-write and read-only, in fd sets
   * 2, 3 …; without them QEMU opens the images by path (before it drops its privileges).
   */
  volumeFds?: [number, number][];
  qmpSocket: string;
}

/** Guest RAM in a file (VM templating): the template shares it, clones map it copy-on-write. */
export interface QemuMemoryFile {
  path: string;
  /** `true` for the template (its RAM is the file), `false` for a clone (a private copy-on-write mapping). */
  share: boolean;
}

/**
 * The QEMU command line of a `microvm` sandbox: no firmware, no PCI, virtio-mmio disk,
 * network and entropy; serial console to the console log; QMP on a unix socket; QEMU's
 * seccomp sandbox on and, when `runAs` is given, its privileges dropped after start-up.
 */
export function qemuArgs(
  spec: RuntimeSpec,
  files: QemuFiles,
  accel: Accel,
  options: {
    runAs?: string;
    hostTscKhz?: number;
    memoryFile?: QemuMemoryFile;
    /** Wait for a migration stream (`-incoming defer`): a clone restored from a snapshot. */
    incoming?: boolean;
  } = {},
): string[] {
  const { runAs, hostTscKhz, memoryFile } = options;
  if (!spec.kernel) throw new Error('a microVM needs a guest kernel');
  if (!spec.network.tap) throw new Error('a microVM needs a TAP device');
  const { vcpus, memoryMiB } = spec.resources;
  const args = [
    '-name',
    `aiva-${spec.id},debug-threads=on`,
    '-M',
    // The RTC gives the guest the date at boot; without it the kernel waits a second for it.
    'microvm,x-option-roms=off,rtc=on,memory-backend=mem',
    // The guest's RAM is always the backend `mem`, whatever it is made of: a saved VM's
    // RAM block has that name, and any VM can be restored from any other's saved state.
    '-object',
    memoryFile
      ? `memory-backend-file,id=mem,size=${memoryMiB}M,mem-path=${memoryFile.path},share=${memoryFile.share ? 'on' : 'off'}`
      : `memory-backend-ram,id=mem,size=${memoryMiB}M`,
    ...(accel === 'kvm'
      ? ['-accel', 'kvm', '-cpu', 'host']
      : ['-accel', 'tcg,thread=multi,tb-size=64', '-cpu', 'max']),
    '-m',
    `${memoryMiB}M`,
    '-smp',
    String(vcpus),
    '-nodefaults',
    '-no-user-config',
    '-nographic',
    '-no-reboot',
    '-chardev',
    `file,id=console,path=${spec.consoleLog},append=on`,
    '-serial',
    'chardev:console',
    '-kernel',
    spec.kernel.kernel,
    '-initrd',
    spec.kernel.initrd,
    '-append',
    kernelCommandLine(spec, {
      root: '/dev/vda',
      reboot: 't',
      tscKhz: accel === 'tcg' ? hostTscKhz : undefined,
    }),
    ...(files.diskFds ? files.diskFds.flatMap((fd) => ['-add-fd', `fd=${fd},set=1`]) : []),
    // No image locks: the disk is the sandbox's alone, and QEMU's OFD locks on an fd set of
    // two open files conflict with themselves when a checkpoint hands the disk back.
    '-drive',
    `id=root,file=${files.disk},file.locking=off,format=qcow2,if=none,discard=unmap,detect-zeroes=unmap`,
    '-device',
    'virtio-blk-device,drive=root',
    ...volumeDrives(spec, files),
    '-netdev',
    `tap,id=net0,ifname=${spec.network.tap},script=no,downscript=no`,
    '-device',
    `virtio-net-device,netdev=net0,mac=${GUEST_MAC}`,
    '-object',
    'rng-random,id=rng0,filename=/dev/urandom',
    '-device',
    'virtio-rng-device,rng=rng0',
    '-qmp',
    `unix:${files.qmpSocket},server=on,wait=off`,
    // -runas drops privileges with set*id calls after the filter is in place; once dropped,
    // no set*id call can gain them back, so the filter allows them only then.
    '-sandbox',
    `on,obsolete=deny,elevateprivileges=${runAs ? 'allow' : 'deny'},spawn=deny,resourcecontrol=deny`,
  ];
  if (runAs) args.push('-runas', runAs);
  if (options.incoming) args.push('-incoming', 'defer');
  return args;
}

/**
 * The volumes' disks: each image raw, after the root disk, with the serial `aiva-vol<i>`
 * by which the guest's init finds the device it mounts at the volume's path
 * (`aiva.vol=<i>:<path>`, `volumeBootArgs`). No image locks, as for the root disk: the
 * node gives a volume to one sandbox at a time (`VolumeDisks.hold`).
 */
function volumeDrives(spec: RuntimeSpec, files: QemuFiles): string[] {
  return (spec.volumes ?? []).flatMap((v, i) => {
    const fds = files.volumeFds?.[i];
    const set = 2 + i;
    return [
      ...(fds ? fds.flatMap((fd) => ['-add-fd', `fd=${fd},set=${set}`]) : []),
      '-drive',
      `id=vol${i},file=${fds ? `/dev/fdset/${set}` : v.image},file.locking=off,format=raw,if=none,discard=unmap`,
      '-device',
      `virtio-blk-device,drive=vol${i},serial=${VOLUME_SERIAL_PREFIX}${i}`,
    ];
  });
}
