import { constants } from 'node:fs';
import { access, readFile } from 'node:fs/promises';

export interface KvmStatus {
  /** /dev/kvm exists and we can open it. */
  device: boolean;
  /** KVM can run an ordinary guest kernel (not only a PVM-enabled one). */
  standardGuests: boolean;
  /** Why not, or what was found. */
  reason: string;
}

/**
 * What KVM on this host can do. The presence of /dev/kvm is not enough: under PVM
 * (kvm_pvm, nested virtualization without vmx/svm) only PVM-enabled guest kernels run,
 * and Debian ships none.
 */
export async function kvmStatus(): Promise<KvmStatus> {
  const device = await access('/dev/kvm', constants.R_OK | constants.W_OK).then(
    () => true,
    () => false,
  );
  if (!device) return { device, standardGuests: false, reason: 'no usable /dev/kvm' };
  const pvm = await access('/sys/module/kvm_pvm').then(
    () => true,
    () => false,
  );
  if (pvm) {
    return {
      device,
      standardGuests: false,
      reason: '/dev/kvm is PVM (kvm_pvm): only PVM-enabled guest kernels run under it',
    };
  }
  const cpuinfo = await readFile('/proc/cpuinfo', 'utf8').catch(() => '');
  if (!/^flags\s*:.*\b(vmx|svm)\b/m.test(cpuinfo)) {
    return { device, standardGuests: false, reason: 'the CPU exposes neither vmx nor svm to this host' };
  }
  return { device, standardGuests: true, reason: 'hardware virtualization (vmx/svm) with /dev/kvm' };
}
