import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import type { Manifest } from './chart.js';
import { secretData } from './chart.js';

const run = promisify(execFile);

/*
 * A stand-in for the kubelet, to run a rendered pod's container the way Kubernetes would, on a
 * machine with no container runtime: a network namespace of its own (the pod network: loopback
 * only, so the pod listens on its real port with nothing else in the way), a private mount
 * namespace whose root is a fresh tmpfs remounted read-only (readOnlyRootFilesystem), the host's
 * /usr read-only in place of the image's base layer, each volume mounted at its mountPath (Secret
 * and ConfigMap volumes as files with their modes, owned by the fsGroup; emptyDirs; PVCs as host
 * folders that outlive the pod), the environment built from env/envFrom/secretKeyRef, the pod's
 * user and fsGroup, workingDir and command. It is not a container runtime: no cgroups, no image
 * layers, no seccomp profile, the same PID namespace as the host.
 */

/** What an image contributes (its ENV, WORKDIR, CMD, and the files it holds). */
export interface ImageStandIn {
  readonly env: Readonly<Record<string, string>>;
  readonly workingDir?: string;
  readonly cmd?: readonly string[];
  /** Host folders bound read-only into the root (e.g. the repository at /src). */
  readonly binds?: readonly { readonly hostPath: string; readonly path: string }[];
  /** Symbolic links in the root (e.g. /app -> /src/core-proxy). */
  readonly symlinks?: readonly { readonly path: string; readonly target: string }[];
}

const BASE_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** The image built from the repository's Dockerfile: its last stage's ENV, WORKDIR and CMD. */
export function dockerfileImage(dockerfile: string, repository: string, appDir: string): ImageStandIn {
  const text = readFileSync(dockerfile, 'utf8').replace(/\\\n/g, ' ');
  const stage = text.slice(text.lastIndexOf('\nFROM '));
  const env: Record<string, string> = { PATH: BASE_PATH };
  for (const line of stage.split('\n').filter((l) => l.startsWith('ENV '))) {
    for (const [, name, value] of line.slice(4).matchAll(/([A-Z_][A-Z0-9_]*)=(\S+)/g)) env[name!] = value!;
  }
  const workingDir = /^WORKDIR (\S+)$/m.exec(stage)?.[1];
  const cmd = JSON.parse(/^CMD (\[.*\])$/m.exec(stage)?.[1] ?? '[]') as string[];
  return {
    env,
    ...(workingDir ? { workingDir } : {}),
    cmd,
    binds: [{ hostPath: repository, path: '/src' }],
    symlinks: workingDir ? [{ path: workingDir, target: `/src/${appDir}` }] : [],
  };
}

/** A loopback-only network namespace, kept alive by a holder process. */
export interface PodNetwork {
  readonly holderPid: number;
  /** Spawns a command inside the network namespace. */
  spawn(command: readonly string[], env?: Record<string, string>): ChildProcess;
  /** Runs a command inside the network namespace and returns its stdout. */
  exec(command: readonly string[], env?: Record<string, string>): Promise<string>;
  /** An HTTP request from inside the namespace (curl). */
  request(method: string, url: string, options?: RequestOptions): Promise<HttpAnswer>;
  close(): Promise<void>;
}

export interface RequestOptions {
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: string;
}

export interface HttpAnswer {
  readonly status: number;
  readonly body: string;
  json(): any;
}

function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill(signal);
  });
}

export async function startPodNetwork(): Promise<PodNetwork> {
  const holder = spawn('unshare', ['--net', '--', 'sh', '-c', 'ip link set lo up && echo up && exec sleep 3600'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  await new Promise<void>((resolve, reject) => {
    let output = '';
    holder.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('up')) resolve();
    });
    holder.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    holder.once('exit', (code) =>
      reject(new Error(`cannot make a network namespace (unshare --net, needs root): ${code} ${output}`)),
    );
  });
  const pid = holder.pid!;
  const nsenter = (command: readonly string[]): string[] => ['-t', String(pid), '-n', '--', ...command];
  const network: PodNetwork = {
    holderPid: pid,
    spawn: (command, env) =>
      spawn('nsenter', nsenter(command), { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } }),
    exec: async (command, env) =>
      (await run('nsenter', nsenter(command), { env: { ...process.env, ...env }, maxBuffer: 16 * 1024 * 1024 })).stdout,
    request: async (method, url, options = {}) => {
      const args = ['curl', '-sS', '--max-time', '60', '-X', method, '-o', '-', '-w', '\n%{http_code}'];
      for (const [name, value] of Object.entries(options.headers ?? {})) args.push('-H', `${name}: ${value}`);
      if (options.body !== undefined) args.push('--data-binary', options.body);
      args.push(url);
      const output = await network.exec(args);
      const cut = output.lastIndexOf('\n');
      const body = output.slice(0, cut);
      return { status: Number(output.slice(cut + 1)), body, json: () => JSON.parse(body) };
    },
    close: () => stopChild(holder, 'SIGKILL'),
  };
  return network;
}

/** A running pod's container. */
export interface PodProcess {
  readonly pid: number;
  readonly child: ChildProcess;
  output(): string;
  readonly exited: Promise<number | string>;
  /** Runs a command in the container (its network, mounts, root and environment), as `kubectl exec`. */
  exec(
    command: readonly string[],
    options?: { readonly asRoot?: boolean },
  ): Promise<{ code: number; stdout: string; stderr: string }>;
  stop(signal?: NodeJS.Signals): Promise<number | string>;
}

/** The Secrets and ConfigMaps a pod's volumes and environment refer to. */
export interface PodInputs {
  readonly secrets: readonly Manifest[];
  readonly configMaps: readonly Manifest[];
  /** Host folders standing in for PersistentVolumeClaims (and StatefulSet volumeClaimTemplates), by volume name. */
  readonly claims?: Readonly<Record<string, string>>;
  /** Service names resolved to the pod network's loopback (in the root's /etc/hosts). */
  readonly hosts?: readonly string[];
}

function quote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

function find(manifests: readonly Manifest[], name: string, kind: string): Manifest {
  const found = manifests.find((m) => m.metadata.name === name);
  if (!found) throw new Error(`the pod refers to ${kind} ${name}, which was not rendered or given`);
  return found;
}

function configMapData(configMap: Manifest): Record<string, string> {
  return { ...((configMap.data ?? {}) as Record<string, string>) };
}

function writeFiles(
  folder: string,
  files: Record<string, string>,
  items: readonly { key: string; path: string; mode?: number }[] | undefined,
  mode: number,
  group: number,
): void {
  const chosen: readonly { key: string; path: string; mode?: number }[] =
    items ?? Object.keys(files).map((key) => ({ key, path: key }));
  for (const item of chosen) {
    const value = files[item.key];
    if (value === undefined) throw new Error(`key ${item.key} is not in the Secret/ConfigMap`);
    const file = join(folder, item.path);
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, value);
    chownSync(file, 0, group);
    chmodSync(file, item.mode ?? mode);
  }
}

/** The container's environment, as the kubelet builds it: image ENV, envFrom, then env. */
function containerEnv(container: any, image: ImageStandIn, inputs: PodInputs): Record<string, string> {
  const env: Record<string, string> = { ...image.env };
  for (const source of container.envFrom ?? []) {
    if (source.configMapRef)
      Object.assign(env, configMapData(find(inputs.configMaps, source.configMapRef.name, 'ConfigMap')));
    else if (source.secretRef) Object.assign(env, secretData(find(inputs.secrets, source.secretRef.name, 'Secret')));
    else throw new Error(`envFrom ${JSON.stringify(source)} is not supported here`);
  }
  for (const entry of container.env ?? []) {
    if (entry.value !== undefined) {
      if (String(entry.value).includes('$('))
        throw new Error(`$(VAR) expansion in ${entry.name} is not supported here`);
      env[entry.name] = String(entry.value);
    } else if (entry.valueFrom?.secretKeyRef) {
      const ref = entry.valueFrom.secretKeyRef;
      const value = secretData(find(inputs.secrets, ref.name, 'Secret'))[ref.key];
      if (value === undefined) throw new Error(`secretKeyRef ${ref.name}/${ref.key} is missing`);
      env[entry.name] = value;
    } else if (entry.valueFrom?.configMapKeyRef) {
      const ref = entry.valueFrom.configMapKeyRef;
      const value = configMapData(find(inputs.configMaps, ref.name, 'ConfigMap'))[ref.key];
      if (value === undefined) throw new Error(`configMapKeyRef ${ref.name}/${ref.key} is missing`);
      env[entry.name] = value;
    } else {
      throw new Error(`env ${entry.name}: ${JSON.stringify(entry.valueFrom)} is not supported here`);
    }
  }
  return env;
}

/**
 * Starts one container of a rendered pod template (a Deployment's or StatefulSet's
 * `spec.template`) in the pod network, and resolves once its process has started (not once it is
 * ready: probe it).
 */
export async function runPod(
  network: PodNetwork,
  podTemplate: any,
  containerName: string,
  image: ImageStandIn,
  inputs: PodInputs,
): Promise<PodProcess> {
  const pod = podTemplate.spec;
  const container = pod.containers.find((c: any) => c.name === containerName);
  if (!container) throw new Error(`no container ${containerName}`);
  const podSecurity = pod.securityContext ?? {};
  const security = { ...podSecurity, ...(container.securityContext ?? {}) };
  const uid = Number(security.runAsUser ?? 0);
  const gid = Number(security.runAsGroup ?? uid);
  const fsGroup = podSecurity.fsGroup === undefined ? gid : Number(podSecurity.fsGroup);
  if (security.runAsNonRoot && uid === 0)
    throw new Error('runAsNonRoot with user 0: the kubelet would refuse this pod');

  const work = mkdtempSync(join(tmpdir(), 'keybrake-pod-'));
  const root = join(work, 'root');
  mkdirSync(root);
  const lines: string[] = [
    'set -eu',
    `R=${quote(root)}`,
    // The image's root: an empty tmpfs, later remounted read-only when the pod asks for it.
    'mount -t tmpfs -o mode=0755 keybrake-pod-root "$R"',
    'mkdir -p "$R/usr" "$R/etc" "$R/proc" "$R/dev"',
    'mount --rbind /usr "$R/usr" && mount -o remount,bind,ro "$R/usr"',
    'ln -s usr/bin "$R/bin" && ln -s usr/lib "$R/lib" && ln -s usr/lib64 "$R/lib64" && ln -s usr/sbin "$R/sbin"',
    'cp /etc/ld.so.cache "$R/etc/ld.so.cache"',
    `printf '%s\\n' ${quote(`127.0.0.1 localhost ${(inputs.hosts ?? []).join(' ')}`)} > "$R/etc/hosts"`,
    `printf 'hosts: files dns\\n' > "$R/etc/nsswitch.conf"`,
    'mount -t proc proc "$R/proc"',
    'mount --rbind /dev "$R/dev"',
  ];
  for (const bind of image.binds ?? []) {
    lines.push(
      `mkdir -p "$R"${quote(bind.path)}`,
      `mount --bind ${quote(bind.hostPath)} "$R"${quote(bind.path)}`,
      `mount -o remount,bind,ro "$R"${quote(bind.path)}`,
    );
  }
  for (const link of image.symlinks ?? []) lines.push(`ln -s ${quote(link.target)} "$R"${quote(link.path)}`);

  const volumes = new Map<string, any>((pod.volumes ?? []).map((v: any) => [v.name, v]));
  for (const mount of container.volumeMounts ?? []) {
    const target = `"$R"${quote(mount.mountPath)}`;
    lines.push(`mkdir -p ${target}`);
    const volume = volumes.get(mount.name);
    const claim = inputs.claims?.[mount.name];
    let source: string | undefined;
    if (claim !== undefined && (!volume || volume.persistentVolumeClaim)) {
      chownSync(claim, 0, fsGroup);
      chmodSync(claim, 0o2775);
      source = claim;
    } else if (!volume) {
      throw new Error(`volumeMount ${mount.name} has no volume (and no claim stand-in)`);
    } else if (volume.emptyDir) {
      if (volume.emptyDir.medium === 'Memory') {
        const size = volume.emptyDir.sizeLimit ? `,size=${String(volume.emptyDir.sizeLimit).replace(/i$/, '')}` : '';
        lines.push(`mount -t tmpfs -o mode=1777${size} keybrake-emptydir ${target}`);
      } else {
        source = mkdtempSync(join(work, `emptydir-${mount.name}-`));
        chownSync(source, 0, fsGroup);
        chmodSync(source, 0o2777);
      }
    } else if (volume.projected || volume.secret || volume.configMap) {
      source = mkdtempSync(join(work, `volume-${mount.name}-`));
      chmodSync(source, 0o755);
      const sources = volume.projected ? volume.projected.sources : [volume];
      const mode =
        volume.projected?.defaultMode ?? volume.secret?.defaultMode ?? volume.configMap?.defaultMode ?? 0o644;
      for (const part of sources) {
        if (part.secret) {
          const name = part.secret.secretName ?? part.secret.name;
          writeFiles(source, secretData(find(inputs.secrets, name, 'Secret')), part.secret.items, mode, fsGroup);
        } else if (part.configMap) {
          const data = configMapData(find(inputs.configMaps, part.configMap.name, 'ConfigMap'));
          writeFiles(source, data, part.configMap.items, mode, fsGroup);
        } else {
          throw new Error(`volume source ${JSON.stringify(part)} is not supported here`);
        }
      }
    } else {
      throw new Error(`volume ${mount.name} (${JSON.stringify(volume)}) is not supported here`);
    }
    if (source !== undefined) {
      lines.push(`mount --bind ${quote(source)} ${target}`);
      if (mount.readOnly) lines.push(`mount -o remount,bind,ro ${target}`);
    }
  }
  if (security.readOnlyRootFilesystem) lines.push('mount -o remount,ro "$R"');

  const env = containerEnv(container, image, inputs);
  const command: string[] = [...(container.command ?? image.cmd ?? []), ...(container.args ?? [])];
  if (command.length === 0) throw new Error('the container has no command');
  const workingDir = container.workingDir ?? image.workingDir ?? '/';
  const envArgs = Object.entries(env).map(([name, value]) => quote(`${name}=${value}`));
  const chroot = `chroot --userspec=${uid}:${gid} --groups=${fsGroup} "$R" /usr/bin/env -i -C ${quote(workingDir)}`;
  lines.push(`exec ${chroot} ${envArgs.join(' ')} ${command.map(quote).join(' ')}`);
  const script = join(work, 'start.sh');
  writeFileSync(script, `${lines.join('\n')}\n`);

  const child = network.spawn(['unshare', '--mount', '--propagation', 'private', '--', 'sh', script]);
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | string>((resolve) =>
    child.once('exit', (code, signal) => {
      rmSync(work, { recursive: true, force: true });
      resolve(code ?? signal ?? -1);
    }),
  );
  const pid = child.pid!;
  return {
    pid,
    child,
    output: () => output,
    exited,
    exec: async (execCommand, options = {}) => {
      // nsenter into the container's namespaces and root, with its environment and user (or root,
      // to show what even root cannot do there).
      const user = options.asRoot ? [] : ['-S', String(uid), '-G', String(gid)];
      const args = ['-t', String(pid), '-n', '-m', '-r', '-w', ...user, '--'];
      args.push('/usr/bin/env', '-i', ...Object.entries(env).map(([n, v]) => `${n}=${v}`), ...execCommand);
      try {
        const { stdout, stderr } = await run('nsenter', args);
        return { code: 0, stdout, stderr };
      } catch (error) {
        const failure = error as { code?: number; stdout?: string; stderr?: string };
        return { code: failure.code ?? -1, stdout: failure.stdout ?? '', stderr: failure.stderr ?? '' };
      }
    },
    stop: async (signal = 'SIGTERM') => {
      await stopChild(child, signal);
      return exited;
    },
  };
}
