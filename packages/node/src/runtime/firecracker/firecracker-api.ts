import { request } from 'node:http';

// Request bodies of Firecracker's REST API, typed from its published API specification
// (src/firecracker/swagger/firecracker.yaml): only the fields aiva sets.

export interface MachineConfiguration {
  vcpu_count: number;
  mem_size_mib: number;
  smt?: boolean;
  track_dirty_pages?: boolean;
}

export interface BootSource {
  kernel_image_path: string;
  initrd_path?: string;
  boot_args?: string;
}

export interface Drive {
  drive_id: string;
  path_on_host: string;
  is_root_device: boolean;
  is_read_only: boolean;
  cache_type?: 'Unsafe' | 'Writeback';
  io_engine?: 'Sync' | 'Async';
}

export interface NetworkInterface {
  iface_id: string;
  host_dev_name: string;
  guest_mac?: string;
}

export interface Logger {
  log_path: string;
  level?: 'Error' | 'Warning' | 'Info' | 'Debug' | 'Trace' | 'Off';
  show_level?: boolean;
  show_log_origin?: boolean;
}

export interface InstanceActionInfo {
  action_type: 'InstanceStart' | 'SendCtrlAltDel' | 'FlushMetrics';
}

export interface Vm {
  state: 'Paused' | 'Resumed';
}

/** `PUT /snapshot/create` (post-boot, the VM paused): the device state and the guest memory, to two files. */
export interface SnapshotCreateParams {
  snapshot_type?: 'Full' | 'Diff';
  /** The microVM state file (devices, vCPUs; small). */
  snapshot_path: string;
  /** The guest memory file (as large as the guest's RAM). */
  mem_file_path: string;
}

/**
 * `PUT /snapshot/load`: only on a fresh process, before any configuration but the logger
 * and metrics. `mem_backend` replaced the deprecated `mem_file_path` (the two exclude each
 * other). Dirty-page tracking, off unless asked for, was `enable_diff_snapshots` before
 * it became `track_dirty_pages`; aiva leaves both out. `network_overrides` exists only
 * in recent versions.
 */
export interface SnapshotLoadParams {
  snapshot_path: string;
  mem_backend: { backend_type: 'File' | 'Uffd'; backend_path: string };
  resume_vm?: boolean;
  track_dirty_pages?: boolean;
  network_overrides?: { iface_id: string; host_dev_name: string }[];
}

export interface InstanceInfo {
  app_name: string;
  id: string;
  state: 'Not started' | 'Running' | 'Paused';
  vmm_version: string;
}

/** Firecracker refused a request; `fault` is its `fault_message`. */
export class FirecrackerApiError extends Error {
  override name = 'FirecrackerApiError';
  constructor(
    readonly method: string,
    readonly path: string,
    readonly status: number,
    readonly fault: string,
  ) {
    super(`Firecracker ${method} ${path}: ${status} ${fault}`);
  }
}

/** How long a request may take: configuration requests answer at once. */
const REQUEST_TIMEOUT_MS = 30_000;

/** How long a snapshot may take to write: several GiB of guest memory on a slow disk. */
const SNAPSHOT_TIMEOUT_MS = 15 * 60_000;

/** A client of one Firecracker process's API socket. */
export class FirecrackerApi {
  constructor(readonly socketPath: string) {}

  private call<T>(
    method: 'GET' | 'PUT' | 'PATCH',
    path: string,
    body?: unknown,
    timeoutMs = REQUEST_TIMEOUT_MS,
  ): Promise<T> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return new Promise<T>((resolve, reject) => {
      const req = request(
        {
          socketPath: this.socketPath,
          method,
          path,
          headers: {
            accept: 'application/json',
            ...(payload
              ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) }
              : {}),
          },
          timeout: timeoutMs,
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => {
            text += d;
          });
          res.on('end', () => {
            const status = res.statusCode ?? 0;
            if (status >= 200 && status < 300) {
              resolve((text ? JSON.parse(text) : undefined) as T);
              return;
            }
            let fault = text;
            try {
              fault = (JSON.parse(text) as { fault_message?: string }).fault_message ?? text;
            } catch {
              // not JSON: keep the text
            }
            reject(new FirecrackerApiError(method, path, status, fault));
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error(`Firecracker ${method} ${path} timed out`)));
      req.on('error', reject);
      req.end(payload);
    });
  }

  describeInstance = () => this.call<InstanceInfo>('GET', '/');
  putLogger = (body: Logger) => this.call<void>('PUT', '/logger', body);
  putMachineConfig = (body: MachineConfiguration) => this.call<void>('PUT', '/machine-config', body);
  putBootSource = (body: BootSource) => this.call<void>('PUT', '/boot-source', body);
  putDrive = (body: Drive) => this.call<void>('PUT', `/drives/${encodeURIComponent(body.drive_id)}`, body);
  putNetworkInterface = (body: NetworkInterface) =>
    this.call<void>('PUT', `/network-interfaces/${encodeURIComponent(body.iface_id)}`, body);
  putEntropy = () => this.call<void>('PUT', '/entropy', {});
  action = (body: InstanceActionInfo) => this.call<void>('PUT', '/actions', body);
  patchVm = (body: Vm) => this.call<void>('PATCH', '/vm', body);
  // Writes the whole guest memory before it answers: allowed far longer than a request.
  createSnapshot = (body: SnapshotCreateParams) =>
    this.call<void>('PUT', '/snapshot/create', body, SNAPSHOT_TIMEOUT_MS);
  loadSnapshot = (body: SnapshotLoadParams) => this.call<void>('PUT', '/snapshot/load', body);
}
