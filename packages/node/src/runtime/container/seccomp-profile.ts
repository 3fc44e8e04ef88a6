/**
 * The seccomp profile of container sandboxes: allow by default, refuse (EPERM) the
 * system calls that reach kernel surface a sandbox has no business with. Capabilities
 * are dropped as well, so most of these would fail anyway; the filter stops the ones
 * that need no capability (user namespaces, bpf, perf, userfaultfd, keyrings,
 * io_uring) and is a second wall for the rest.
 *
 * A deny list, unlike Docker's allow list, does not break programs that use system
 * calls newer than the list; it does let new, unlisted calls through.
 */
const DENIED: Record<string, string[]> = {
  'kernel modules and kexec': [
    'create_module',
    'delete_module',
    'finit_module',
    'get_kernel_syms',
    'init_module',
    'kexec_file_load',
    'kexec_load',
    'query_module',
  ],
  'mounts and namespaces': [
    'fsconfig',
    'fsmount',
    'fsopen',
    'fspick',
    'mount',
    'mount_setattr',
    'move_mount',
    'open_tree',
    'pivot_root',
    'setns',
    'umount',
    'umount2',
    'unshare',
  ],
  'kernel-wide state': [
    'acct',
    'clock_adjtime',
    'clock_settime',
    'nfsservctl',
    'quotactl',
    'quotactl_fd',
    'settimeofday',
    'stime',
    'swapoff',
    'swapon',
    'syslog',
    '_sysctl',
    'sysfs',
    'uselib',
    'ustat',
    'vhangup',
  ],
  'unprivileged attack surface': [
    'add_key',
    'bpf',
    'io_uring_enter',
    'io_uring_register',
    'io_uring_setup',
    'keyctl',
    'lookup_dcookie',
    'perf_event_open',
    'request_key',
    'userfaultfd',
  ],
  'host file handles and other processes': [
    'kcmp',
    'name_to_handle_at',
    'open_by_handle_at',
    'process_vm_writev',
  ],
  'raw I/O': ['ioperm', 'iopl', 'vm86', 'vm86old'],
};

/** clone(2) flags that create namespaces; clone with any of them is refused. */
const NAMESPACE_FLAGS = {
  CLONE_NEWNS: 0x00020000,
  CLONE_NEWCGROUP: 0x02000000,
  CLONE_NEWUTS: 0x04000000,
  CLONE_NEWIPC: 0x08000000,
  CLONE_NEWUSER: 0x10000000,
  CLONE_NEWPID: 0x20000000,
  CLONE_NEWNET: 0x40000000,
};

const EPERM = 1;
const ENOSYS = 38;

/** The profile in OCI runtime-spec form (linux.seccomp). */
export function seccompProfile(): object {
  return {
    defaultAction: 'SCMP_ACT_ALLOW',
    architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'],
    syscalls: [
      { names: Object.values(DENIED).flat().sort(), action: 'SCMP_ACT_ERRNO', errnoRet: EPERM },
      // clone3 passes its flags in memory, out of the filter's reach: answering ENOSYS
      // makes the C library fall back to clone, whose flags are checked below.
      { names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: ENOSYS },
      // One rule per flag: rules are OR-ed, the conditions inside one rule AND-ed.
      ...Object.values(NAMESPACE_FLAGS).map((flag) => ({
        names: ['clone'],
        action: 'SCMP_ACT_ERRNO',
        errnoRet: EPERM,
        args: [{ index: 0, value: flag, valueTwo: flag, op: 'SCMP_CMP_MASKED_EQ' }],
      })),
    ],
  };
}
