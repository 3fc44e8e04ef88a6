import { join } from 'node:path';

/** The data directory: `AIVA_HOME`, else /var/lib/aiva. Everything aiva keeps lives here. */
export function dataDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.AIVA_HOME && env.AIVA_HOME.length > 0 ? env.AIVA_HOME : '/var/lib/aiva';
}

/** Where the image store keeps its content-addressed artefacts under the data directory. */
export interface ImagePaths {
  root: string;
  /** Debian and envd layers: `layers/<hash>/rootfs` plus `layer.json`. */
  layers: string;
  /** Template images: `images/<hash>/rootfs.ext4` plus `image.json`. */
  images: string;
  /** Guest kernels: `kernels/<hash>/{vmlinuz,initrd.img,kernel.json}`. */
  kernels: string;
  /** Name → current image hash: `refs/<name>.json`. */
  refs: string;
  /** Work in progress; anything here is incomplete and removed on failure. */
  tmp: string;
  locks: string;
  /** VM snapshots of templates (qemu-microvm): `snapshots/<template>-<mem>M-<vcpus>-<key>/`. */
  snapshots: string;
  /**
   * Registry and imported images: one OCI image layout whose blobs (manifests, configs,
   * compressed layers) are shared by digest between images; `index.json` names them.
   */
  oci: string;
  /** Downloaded .deb files, reused across builds. */
  aptCache: string;
}

export function imagePaths(home: string): ImagePaths {
  const root = join(home, 'images');
  return {
    root,
    layers: join(root, 'layers'),
    images: join(root, 'images'),
    kernels: join(root, 'kernels'),
    refs: join(root, 'refs'),
    tmp: join(root, 'tmp'),
    locks: join(root, 'locks'),
    snapshots: join(root, 'snapshots'),
    oci: join(root, 'oci'),
    aptCache: join(home, 'cache', 'apt'),
  };
}
