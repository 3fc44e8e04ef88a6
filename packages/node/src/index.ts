export { CommandJournal } from './agent/command-journal.js';
export { backoffMs, NodeAgent, type NodeAgentOptions, NodeRefusedError } from './agent/node-agent.js';
export {
  type CommandHooks,
  contractSandbox,
  NodeExecutor,
  type NodeExecutorOptions,
} from './agent/node-executor.js';
export { failureOf } from './agent/node-failures.js';
export { type NodeSnapshotOptions, NodeSnapshotter } from './agent/node-snapshot.js';
export {
  type DialOptions,
  type TunnelConnection,
  TunnelDialError,
  TunnelServer,
  type TunnelServerOptions,
  type TunnelTarget,
} from './agent/tunnel-server.js';
export {
  type BuildBase,
  type BuildContext,
  type BuildLogEntry,
  type BuildResult,
  type BuildSpec,
  type BuildStep,
  BuildStepError,
} from './build/build-types.js';
export { TemplateBuilder } from './build/template-builder.js';
export {
  type ExecOptions,
  type ExecResult,
  envdHeaders,
  execInSandbox,
  type StartedCommand,
  signalOfStatus,
  startInSandbox,
} from './envd/envd-client.js';
export { envdMetrics } from './envd/envd-http.js';
export { CommandError, runCommand } from './host/command.js';
export { LockBusyError, lockFile } from './host/file-lock.js';
export {
  type HostResources,
  hostResources,
  leftoverHostResources,
  type NodeResourceFilter,
} from './host/host-resources.js';
export { DEFAULT_HOST_SCOPE, HostScope, type HostScopeOptions } from './host/host-scope.js';
export { type BuildReporter, ImageBuildError, silentReporter } from './image/build-reporter.js';
export { GUEST_RUNTIME_DIR, hostGuestTools } from './image/guest-layer.js';
export { ImageStore, MissingArtefactError } from './image/image-store.js';
export {
  GUEST_DIR,
  GUEST_INIT,
  type GuestKernel,
  type GuestTools,
  type ImageStoreOptions,
  type LayerRecord,
  type ResolvedKernel,
  type ResolvedTemplate,
  type StoredArtefact,
  type TemplateDefaults,
  type TemplateDefinition,
  type TemplateImage,
  type TemplateStart,
} from './image/image-types.js';
export { type OciErrorReason, OciImageError } from './image/oci-errors.js';
export { type OciImage, OciImages, type OciImportOptions, type OciPullOptions } from './image/oci-images.js';
export { RecipeError } from './image/recipe.js';
export { type LocalNode, type LocalNodeOptions, openLocalNode } from './local-node.js';
export { AddressPool } from './network/address-pool.js';
export type { NetworkCheck } from './network/network-checks.js';
export {
  ALWAYS_BLOCKED,
  type NetworkPolicy,
  validateNetworkPolicy,
} from './network/network-policy.js';
export { dataDir, imagePaths } from './paths.js';
export { discardSnapshotsOf } from './runtime/qemu/vm-snapshot.js';
export { checkHost, type DriverCheck, type HostCapabilities, VM_USER } from './runtime/select.js';
export {
  DRIVER_NAMES,
  type DriverName,
  type RuntimeCapabilities,
  RuntimeError,
  type RuntimeStats,
  type SandboxResources,
  type SandboxRuntime,
  SandboxSpecError,
} from './runtime/types.js';
export { SandboxManager } from './sandbox/sandbox-manager.js';
export {
  type CreateSandboxOptions,
  NodeBusyError,
  newSandboxId,
  SANDBOX_ID_PATTERN,
  type SandboxManagerOptions,
} from './sandbox/sandbox-options.js';
export { type CheckpointRecord, RecordError, type SandboxRecord } from './sandbox/sandbox-record.js';
export { type SandboxInfo, SandboxNotFoundError } from './sandbox/sandbox-records.js';
export { type SandboxOperation, type SandboxState, SandboxStateError } from './sandbox/sandbox-state.js';
export {
  DEFAULT_VOLUME_SIZE_MIB,
  MAX_VOLUME_SIZE_MIB,
  MIN_VOLUME_SIZE_MIB,
  type VolumeDiskStore,
  VolumeDisks,
} from './sandbox/volume-disks.js';
