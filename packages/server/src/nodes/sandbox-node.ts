import type { BuildLogEntry, BuildResult, BuildSpec, TemplateDefinition } from '@aiva/node';

/**
 * What the control plane asks of a node (seed 003: one interface, whether the node runs
 * in this process or on another host). The server never touches a runtime itself.
 */
export interface NodeSandboxRequest {
  id: string;
  /** A recipe template's name (`base`), or a built template's definition. */
  template: string | TemplateDefinition;
  envVars?: Record<string, string>;
  /** envd's access token for the sandbox. */
  accessToken: string;
  /** Its egress policy (internet on unless `allowInternetAccess` is false). */
  network?: NodeNetworkPolicy;
  /** Start from this checkpoint (`SandboxNode.checkpoint`) instead of from `template`. */
  fromCheckpoint?: string;
}

/** A saved sandbox on a node. */
export interface NodeCheckpoint {
  name: string;
  /** Whether it holds memory and processes (microVMs) or files only (containers). */
  memory: boolean;
  bytes: number;
}

/** A sandbox's egress policy: CIDRs, addresses and domain names (E2B's `allowOut`/`denyOut`). */
export interface NodeNetworkPolicy {
  allowInternetAccess?: boolean;
  allowOut?: string[];
  denyOut?: string[];
}

export interface NodeSandbox {
  id: string;
  state: 'creating' | 'running' | 'paused' | 'stopping' | 'stopped' | 'error';
  vcpus: number;
  memoryMiB: number;
  diskMiB: number;
  envdVersion: string;
  error?: string;
  /** Paused without its memory: its processes ended, its disk kept; a resume boots it afresh. */
  withoutMemory?: boolean;
}

/** A sample of a sandbox's resource use (E2B's metric fields). */
export interface SandboxUsage {
  timestamp: Date;
  cpuCount: number;
  cpuUsedPct: number;
  memUsed: number;
  memTotal: number;
  memCache: number;
  diskUsed: number;
  diskTotal: number;
}

export interface SandboxNode {
  readonly id: string;
  /** Template names this node can run. */
  templates(): Promise<string[]>;
  create(request: NodeSandboxRequest): Promise<NodeSandbox>;
  /**
   * Hands a running sandbox made ahead of time to its tenant: its envd gets the new
   * access token (the old one stops working) and env vars, and the policy is applied.
   */
  claim(
    id: string,
    request: Pick<NodeSandboxRequest, 'accessToken' | 'envVars' | 'network'>,
  ): Promise<NodeSandbox>;
  /** Kills a sandbox; false if the node does not have it. */
  kill(id: string): Promise<boolean>;
  /**
   * Pauses a running sandbox with its memory, or (`memory: false`, E2B's `keepMemory:
   * false`) ends its processes and keeps its disk only; a SandboxSpecError if its driver
   * cannot.
   */
  pause(id: string, options?: { memory?: boolean }): Promise<void>;
  /** Replaces a sandbox's egress policy, live. A policy the node refuses throws SandboxSpecError. */
  updateNetwork(id: string, policy: NodeNetworkPolicy): Promise<void>;
  /**
   * Resumes a paused sandbox: where it was, or booted afresh over its disk when it was
   * paused without memory or `memory: false` asks so (its memory is then dropped).
   */
  resume(id: string, options?: { memory?: boolean }): Promise<void>;
  /**
   * Saves a running or paused sandbox under `name` (lower-case letters, digits, - and _);
   * creates with `fromCheckpoint: name` make independent copies of it. The sandbox's
   * state does not change.
   */
  checkpoint(id: string, name: string): Promise<NodeCheckpoint>;
  /** Removes a checkpoint; false if the node has none by that name. Copies made from it run on. */
  removeCheckpoint(name: string): Promise<boolean>;
  /** The names of the node's checkpoints. */
  checkpoints(): Promise<string[]>;
  get(id: string): NodeSandbox | undefined;
  list(): NodeSandbox[];
  /** The host and port at which this process reaches a port of the sandbox, if it runs. */
  endpoint(id: string, port: number): { host: string; port: number } | undefined;
  usage(id: string): Promise<SandboxUsage>;
  /** The sandbox's console output (init and envd). */
  consoleLog(id: string): Promise<string>;
  /**
   * Builds a template in build sandboxes of this node; `log` hears its log as it goes.
   * Rejects with the node's BuildStepError (its step and why) when a step fails.
   */
  buildTemplate(
    spec: BuildSpec,
    log: (entry: BuildLogEntry) => void,
    signal?: AbortSignal,
  ): Promise<BuildResult>;
  /** Frees the layers no template image still uses of `layers` (a deleted template's). */
  removeLayers(layers: string[]): Promise<void>;
  /** Called when a sandbox ends or fails without being asked to (its process died). */
  onSandboxFailed(listener: (id: string, reason: string) => void): void;
}
