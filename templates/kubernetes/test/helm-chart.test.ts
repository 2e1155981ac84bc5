import { createPrivateKey, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  CHART_DIR,
  CI_VALUES_DIR,
  DOCKERFILE,
  KUBE_VERSION,
  MANIFESTS_DIR,
  MANIFESTS_VALUES,
  STRICT_DECODE_DIR,
  type Manifest,
  byKind,
  helm,
  isArgoKind,
  one,
  parseManifests,
  render,
  secretData,
  selects,
  templateArgs,
  validateManifest,
} from './chart.js';
import { BUILT_IN_VENDORS } from '../../../core-proxy/src/vendors/registry.js';
import { chartVendors } from '../../../core-proxy/src/vendors/helm-chart-source.js';

const run = promisify(execFile);

/** The value sets CI renders: the defaults, then every file in the chart's `ci/` folder. */
const VALUE_SETS: readonly { name: string; valuesFiles: string[] }[] = [
  { name: 'defaults', valuesFiles: [] },
  ...readdirSync(CI_VALUES_DIR)
    .filter((file) => file.endsWith('-values.yaml'))
    .sort()
    .map((file) => ({ name: file.replace(/-values\.yaml$/, ''), valuesFiles: [join(CI_VALUES_DIR, file)] })),
  { name: 'committed manifests', valuesFiles: [MANIFESTS_VALUES] },
];

function proxyContainer(manifests: readonly Manifest[]): any {
  const deployment = one(manifests, 'Deployment');
  return deployment.spec.template.spec.containers.find((c: any) => c.name === 'proxy');
}

function envNames(container: any): string[] {
  return (container.env ?? []).map((e: any) => e.name as string);
}

/** Every string anywhere in an object, with its path. */
function strings(value: unknown, path = ''): { path: string; value: string }[] {
  if (typeof value === 'string') return [{ path, value }];
  if (Array.isArray(value)) return value.flatMap((item, i) => strings(item, `${path}[${i}]`));
  if (value && typeof value === 'object') {
    return Object.entries(value).flatMap(([key, item]) => strings(item, `${path}.${key}`));
  }
  return [];
}

describe('Helm chart templates/kubernetes/keybrake (helm lint, helm template, schema validation)', () => {
  it('passes helm lint --strict with every value set', async () => {
    for (const set of VALUE_SETS) {
      const args = ['lint', '--strict', '--kube-version', KUBE_VERSION, CHART_DIR];
      for (const file of set.valuesFiles) args.push('--values', file);
      const output = await helm(args);
      expect(output.code, `${set.name}: ${output.stdout}${output.stderr}`).toBe(0);
      expect(output.stdout).toContain('1 chart(s) linted, 0 chart(s) failed');
    }
  });

  it.each(VALUE_SETS)('renders $name into manifests that each pass their kind’s schema', async (set) => {
    const { manifests } = await render({ valuesFiles: set.valuesFiles });
    expect(manifests.length).toBeGreaterThan(5);
    for (const manifest of manifests) {
      expect(() => validateManifest(manifest), `${manifest.kind} ${manifest.metadata.name}`).not.toThrow();
      expect(manifest.metadata.namespace, `${manifest.kind} ${manifest.metadata.name}`).toBe('keybrake');
    }
    // The chart holds no Argo kinds; were one added, it would need `argo lint --offline` here.
    expect(manifests.filter(isArgoKind)).toEqual([]);
    // Names are unique per kind (a clash would make one object overwrite another on apply).
    const names = manifests.map((m) => `${m.kind}/${m.metadata.name}`);
    expect(new Set(names).size).toBe(names.length);
  });

  describe('strict decoding into the Kubernetes Go types (k8s.io/api v0.37, as kubectl apply --validate=strict)', () => {
    let decoder = '';
    beforeAll(async () => {
      // A build, not an assertion: the first one downloads and compiles k8s.io/api.
      decoder = join(mkdtempSync(join(tmpdir(), 'keybrake-strict-decode-')), 'strict-decode');
      await run('go', ['build', '-o', decoder, '.'], {
        cwd: STRICT_DECODE_DIR,
        env: { ...process.env, GOFLAGS: '-mod=readonly' },
      });
    }, 600_000);

    async function decode(text: string): Promise<{ code: number; stdout: string; stderr: string }> {
      return new Promise((resolve) => {
        const child = execFile(decoder, [], (error, stdout, stderr) =>
          resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
        );
        child.stdin!.end(text);
      });
    }

    it.each(VALUE_SETS)('$name: every manifest decodes with no unknown or duplicate field', async (set) => {
      const { text, manifests } = await render({ valuesFiles: set.valuesFiles });
      const result = await decode(text);
      expect(result.code, result.stderr).toBe(0);
      const crds = manifests.filter((m) => m.apiVersion === 'monitoring.coreos.com/v1').length;
      expect(result.stdout).toContain(`${manifests.length - crds} decoded strictly`);
    });

    it('refuses a misspelt field, which the OpenAPI schemas let through', async () => {
      const { text } = await render();
      const misspelt = text.replace(/readinessProbe:/g, 'readinesProbe:');
      const deployment = parseManifests(misspelt).find((m) => m.kind === 'Deployment')!;
      expect(() => validateManifest(deployment)).not.toThrow();
      const result = await decode(misspelt);
      expect(result.code).toBe(1);
      expect(result.stderr).toContain(
        'apps/v1 Deployment/keybrake: error unmarshaling JSON: while decoding JSON: json: unknown field "readinesProbe"',
      );
    });
  });

  it('schema validation catches a broken manifest (the check is not vacuous)', async () => {
    const { manifests } = await render();
    const deployment = structuredClone(one(manifests, 'Deployment'));
    deployment.spec.replicas = 'two';
    delete deployment.spec.template.spec.containers[0].name;
    expect(() => validateManifest(deployment)).toThrow(/replicas must be integer/);
    expect(() => validateManifest({ apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'w' } })).toThrow(
      /no schema/,
    );
  });

  it('refuses replicas > 1 without Redis, with a message that says what to set', async () => {
    const output = await helm(templateArgs({ set: { replicaCount: 3, 'redis.mode': 'none' } }));
    expect(output.code).not.toBe(0);
    expect(output.stderr).toContain('replicaCount is 3, but redis.mode is none');
    expect(output.stderr).toContain('redis.mode=bundled');
    // One replica on the embedded store is fine.
    await render({ set: { replicaCount: 1, 'redis.mode': 'none' } });
  });

  it('refuses value sets that cannot work: unknown values, an external Redis with no URL or no egress, a vendor with no secret', async () => {
    const refusals: [RenderOptions: Parameters<typeof templateArgs>[0], message: RegExp][] = [
      [{ set: { replicaCont: 2 } }, /additional properties 'replicaCont' not allowed/],
      [{ set: { 'redis.mode': 'sqlite' } }, /'\/redis\/mode': value must be one of/],
      [{ set: { 'redis.mode': 'external' } }, /set redis\.external\.url or redis\.external\.existingSecret/],
      [
        { set: { 'redis.mode': 'external', 'redis.external.url': 'redis://r:6379' } },
        /set networkPolicy\.externalRedisEgress\.to/,
      ],
      [{ set: { 'redis.external.url': 'redis://r:6379' } }, /set redis\.mode=external to use it/],
      [{ set: { 'vendors.stripe.enabled': true } }, /set vendors\.stripe\.secretKey/],
      [{ set: { 'config.extraEnv.KEYBRAKE_API_KEYS': 'x' } }, /config\.extraEnv\.KEYBRAKE_API_KEYS/],
      [
        { set: { 'config.extraEnv.STRIPE_SECRET_KEY': 'x' } },
        /'STRIPE_SECRET_KEY' does not match pattern '\^KEYBRAKE_/,
      ],
    ];
    for (const [options, message] of refusals) {
      const output = await helm(templateArgs(options));
      expect(output.code, JSON.stringify(options)).not.toBe(0);
      expect(output.stderr, JSON.stringify(options)).toMatch(message);
    }
  });

  it('puts every secret in a Secret, mounted as a file the proxy reads through NAME_FILE, never in a ConfigMap or an env value', async () => {
    // Every built-in vendor enabled, each secret a random value (the vendors and fields from the registry).
    const vendorSecrets = chartVendors(BUILT_IN_VENDORS).flatMap((vendor) =>
      vendor.secrets.map((secret) => ({ vendor: vendor.name, ...secret, value: randomBytes(16).toString('hex') })),
    );
    const vendors: Record<string, Record<string, unknown>> = {};
    for (const { vendor, field, value } of vendorSecrets) (vendors[vendor] ??= { enabled: true })[field] = value;
    const secrets = {
      ...Object.fromEntries(vendorSecrets.map(({ env, value }) => [env, value])),
      issuer: `kb_admin_${randomBytes(16).toString('hex')}`,
      redisUrl: `redis://:${randomBytes(12).toString('hex')}@redis.internal:6379/0`,
    };
    const valuesFile = join(mkdtempSync(join(tmpdir(), 'keybrake-chart-')), 'values.yaml');
    writeFileSync(
      valuesFile,
      JSON.stringify({
        vendors,
        issuerKeys: { keys: [secrets.issuer] },
        redis: { mode: 'external', external: { url: secrets.redisUrl } },
        networkPolicy: { externalRedisEgress: { to: [{ ipBlock: { cidr: '10.1.2.3/32' } }] } },
      }),
    );
    const { text, manifests } = await render({ valuesFiles: [valuesFile] });
    const literals = Object.values(secrets);
    const inSecrets = byKind(manifests, 'Secret').flatMap((secret) => Object.values(secretData(secret)));
    for (const literal of literals) {
      expect(inSecrets, 'each secret is in a Secret').toContain(literal);
      // Nowhere in plain text: Secrets hold it base64-encoded, and nothing else holds it at all.
      expect(text.includes(literal), 'a secret literal in the rendered text').toBe(false);
      for (const manifest of manifests.filter((m) => m.kind !== 'Secret')) {
        for (const { path, value } of strings(manifest)) {
          expect(value.includes(literal), `${manifest.kind} ${manifest.metadata.name}${path}`).toBe(false);
          expect(value.includes(Buffer.from(literal).toString('base64')), `${manifest.kind}${path}`).toBe(false);
        }
      }
    }
    const configMap = one(manifests, 'ConfigMap', 'keybrake');
    expect(Object.keys(configMap.data).every((name) => name.startsWith('KEYBRAKE_'))).toBe(true);

    const container = proxyContainer(manifests);
    // No secret reaches the environment, not even through secretKeyRef: files only.
    for (const entry of container.env) {
      expect(entry.valueFrom, entry.name).toBeUndefined();
    }
    const fileEnv = Object.fromEntries(
      container.env.filter((e: any) => e.name.endsWith('_FILE')).map((e: any) => [e.name, e.value]),
    );
    expect(Object.keys(fileEnv).sort()).toEqual(
      [
        'KEYBRAKE_API_KEYS_FILE',
        'KEYBRAKE_AUDIT_SIGNING_KEY_FILE',
        'KEYBRAKE_REDIS_URL_FILE',
        ...vendorSecrets.map(({ env }) => `${env}_FILE`),
      ].sort(),
    );
    // Each *_FILE names a file of the projected Secret volume, which holds exactly that key.
    const mount = container.volumeMounts.find((m: any) => m.name === 'secrets');
    expect(mount.readOnly).toBe(true);
    const volume = one(manifests, 'Deployment').spec.template.spec.volumes.find((v: any) => v.name === 'secrets');
    const projected = new Map<string, { secret: string; key: string }>();
    for (const source of volume.projected.sources) {
      for (const item of source.secret.items) projected.set(item.path, { secret: source.secret.name, key: item.key });
    }
    for (const [name, path] of Object.entries(fileEnv)) {
      const variable = name.replace(/_FILE$/, '');
      expect(path).toBe(`${mount.mountPath}/${variable}`);
      const source = projected.get(variable);
      expect(source, variable).toBeDefined();
      const secret = one(manifests, 'Secret', source!.secret);
      expect(Object.keys(secretData(secret))).toContain(source!.key);
    }
    expect(volume.projected.defaultMode).toBe(0o440);
  });

  it('runs the proxy non-root on a read-only root filesystem, without privilege escalation or capabilities, under seccomp RuntimeDefault', async () => {
    for (const set of VALUE_SETS) {
      const { manifests } = await render({ valuesFiles: set.valuesFiles });
      const pods = [...byKind(manifests, 'Deployment'), ...byKind(manifests, 'StatefulSet')].map(
        (w) => w.spec.template,
      );
      for (const pod of pods) {
        expect(pod.spec.securityContext.runAsNonRoot, set.name).toBe(true);
        expect(pod.spec.securityContext.runAsUser).toBeGreaterThan(0);
        expect(pod.spec.securityContext.seccompProfile).toEqual({ type: 'RuntimeDefault' });
        expect(pod.spec.automountServiceAccountToken).toBe(false);
        for (const container of pod.spec.containers) {
          expect(container.securityContext, `${set.name} ${container.name}`).toMatchObject({
            allowPrivilegeEscalation: false,
            readOnlyRootFilesystem: true,
            privileged: false,
            capabilities: { drop: ['ALL'] },
          });
          expect(container.securityContext.capabilities.add).toBeUndefined();
        }
      }
    }
  });

  it('probes readiness on /readyz and liveness on /healthz, on the port the proxy listens on', async () => {
    const { manifests } = await render();
    const container = proxyContainer(manifests);
    const port = container.ports.find((p: any) => p.name === container.readinessProbe.httpGet.port);
    expect(port.containerPort).toBe(8080);
    expect(container.readinessProbe.httpGet.path).toBe('/readyz');
    expect(container.livenessProbe.httpGet.path).toBe('/healthz');
    expect(container.livenessProbe.httpGet.port).toBe(port.name);
    expect(one(manifests, 'ConfigMap', 'keybrake').data).toMatchObject({
      KEYBRAKE_HOST: '0.0.0.0',
      KEYBRAKE_PORT: '8080',
    });
    // The Service and the PDB select exactly the proxy pods.
    const podLabels = one(manifests, 'Deployment').spec.template.metadata.labels;
    const service = one(manifests, 'Service', 'keybrake');
    expect(selects(service.spec.selector, podLabels)).toBe(true);
    expect(service.spec.ports[0].targetPort).toBe('http');
    expect(selects(one(manifests, 'PodDisruptionBudget').spec.selector.matchLabels, podLabels)).toBe(true);
    expect(one(manifests, 'PodDisruptionBudget').spec.maxUnavailable).toBe(1);
    expect(selects(one(manifests, 'Deployment').spec.selector.matchLabels, podLabels)).toBe(true);
  });

  it('defaults to two replicas on a bundled Redis with AOF (fsync always, no eviction) on a PVC, reached through the URL file', async () => {
    const { manifests } = await render();
    const deployment = one(manifests, 'Deployment');
    expect(deployment.spec.replicas).toBe(2);
    expect(deployment.spec.strategy).toEqual({
      type: 'RollingUpdate',
      rollingUpdate: { maxSurge: 1, maxUnavailable: 0 },
    });
    const redis = one(manifests, 'StatefulSet');
    expect(redis.spec.replicas).toBe(1);
    expect(redis.spec.volumeClaimTemplates[0].spec.resources.requests.storage).toBe('8Gi');
    expect(redis.spec.template.spec.containers[0].volumeMounts).toContainEqual({ name: 'data', mountPath: '/data' });
    const conf = one(manifests, 'ConfigMap', 'keybrake-redis').data['redis.conf'] as string;
    for (const line of ['appendonly yes', 'appendfsync always', 'dir /data', 'maxmemory-policy noeviction']) {
      expect(conf.split('\n')).toContain(line);
    }
    // The proxy's URL file points at the bundled Redis Service, with the generated password.
    const redisSecret = secretData(one(manifests, 'Secret', 'keybrake-redis'));
    expect(redisSecret.REDIS_PASSWORD).toMatch(/^[A-Za-z0-9]{40}$/);
    expect(redisSecret.KEYBRAKE_REDIS_URL).toBe(`redis://:${redisSecret.REDIS_PASSWORD}@keybrake-redis:6379/0`);
    expect(one(manifests, 'Service', 'keybrake-redis').spec.ports[0].port).toBe(6379);
    expect(envNames(proxyContainer(manifests))).toContain('KEYBRAKE_REDIS_URL_FILE');
    // With Redis the proxy writes nothing locally: no data volume at all.
    expect(
      proxyContainer(manifests)
        .volumeMounts.map((m: any) => m.mountPath)
        .sort(),
    ).toEqual(['/etc/keybrake/secrets', '/tmp']);
  });

  it('generates a shared Ed25519 (PKCS#8) audit signing key and an issuer key when none is given', async () => {
    const { manifests } = await render();
    const audit = secretData(one(manifests, 'Secret', 'keybrake-audit-signing-key')).KEYBRAKE_AUDIT_SIGNING_KEY!;
    expect(audit).toContain('-----BEGIN PRIVATE KEY-----');
    expect(createPrivateKey(audit).asymmetricKeyType).toBe('ed25519');
    expect(one(manifests, 'Secret', 'keybrake-audit-signing-key').metadata.annotations).toMatchObject({
      'helm.sh/resource-policy': 'keep',
    });
    expect(secretData(one(manifests, 'Secret', 'keybrake-issuer-keys')).KEYBRAKE_API_KEYS).toMatch(
      /^kb_admin_[A-Za-z0-9]{40}$/,
    );
  });

  it('uses the Secrets you made (existingSecret) and makes none of its own for them', async () => {
    const { manifests } = await render({ valuesFiles: [MANIFESTS_VALUES] });
    expect(byKind(manifests, 'Secret')).toEqual([]);
    const sources = one(manifests, 'Deployment').spec.template.spec.volumes[0].projected.sources.map(
      (s: any) => s.secret.name,
    );
    expect(sources.sort()).toEqual(
      ['keybrake-audit-signing-key', 'keybrake-issuer-keys', 'keybrake-redis', 'keybrake-vendors'].sort(),
    );
    const redisEnv = one(manifests, 'StatefulSet').spec.template.spec.containers[0].env;
    expect(redisEnv.map((e: any) => e.valueFrom.secretKeyRef.name)).toEqual(['keybrake-redis', 'keybrake-redis']);
  });

  it('replicas 3: three proxies, every vendor file mounted from the existing vendor Secret', async () => {
    const { manifests } = await render({
      valuesFiles: [join(CI_VALUES_DIR, 'replicas-3-values.yaml')],
      set: Object.fromEntries(BUILT_IN_VENDORS.map((vendor) => [`vendors.${vendor.name}.enabled`, true])),
    });
    expect(one(manifests, 'Deployment').spec.replicas).toBe(3);
    expect(byKind(manifests, 'Secret').map((s) => s.metadata.name)).not.toContain('keybrake-vendors');
    const env = envNames(proxyContainer(manifests));
    for (const name of BUILT_IN_VENDORS.flatMap((vendor) => vendor.secretNames)) expect(env).toContain(`${name}_FILE`);
  });

  it('external Redis: no bundled Redis, the URL in a Secret, egress allowed to it only', async () => {
    const { manifests } = await render({ valuesFiles: [join(CI_VALUES_DIR, 'external-redis-values.yaml')] });
    expect(byKind(manifests, 'StatefulSet')).toEqual([]);
    expect(secretData(one(manifests, 'Secret', 'keybrake-redis-url')).KEYBRAKE_REDIS_URL).toBe(
      'redis://:ci-password@redis.example.internal:6379/0',
    );
    const policy = one(manifests, 'NetworkPolicy', 'keybrake');
    expect(policy.spec.egress).toContainEqual({
      to: [{ ipBlock: { cidr: '10.20.30.40/32' } }],
      ports: [{ port: 6379, protocol: 'TCP' }],
    });
    expect(byKind(manifests, 'NetworkPolicy').map((p) => p.metadata.name)).toEqual(['keybrake']);
  });

  it('embedded store (one replica): the data folder on a PVC (or an emptyDir), Recreate so one process owns it', async () => {
    const { manifests } = await render({ valuesFiles: [join(CI_VALUES_DIR, 'embedded-values.yaml')] });
    const deployment = one(manifests, 'Deployment');
    expect(deployment.spec.replicas).toBe(1);
    expect(deployment.spec.strategy).toEqual({ type: 'Recreate' });
    expect(byKind(manifests, 'StatefulSet')).toEqual([]);
    const container = proxyContainer(manifests);
    expect(envNames(container)).not.toContain('KEYBRAKE_REDIS_URL_FILE');
    const dataDir = container.env.find((e: any) => e.name === 'KEYBRAKE_DATA_DIR').value;
    const mount = container.volumeMounts.find((m: any) => m.mountPath === dataDir);
    const volume = deployment.spec.template.spec.volumes.find((v: any) => v.name === mount.name);
    const claim = one(manifests, 'PersistentVolumeClaim');
    expect(volume.persistentVolumeClaim.claimName).toBe(claim.metadata.name);
    expect(claim.spec.accessModes).toEqual(['ReadWriteOnce']);

    const trial = await render({
      valuesFiles: [join(CI_VALUES_DIR, 'embedded-values.yaml')],
      set: { 'embedded.persistence.enabled': false },
    });
    expect(byKind(trial.manifests, 'PersistentVolumeClaim')).toEqual([]);
    const trialVolumes = one(trial.manifests, 'Deployment').spec.template.spec.volumes;
    expect(trialVolumes.find((v: any) => v.name === 'data')).toEqual({ name: 'data', emptyDir: {} });
  });

  it('NetworkPolicy: only the client pods (and scrapers) reach the proxy; it reaches DNS, its Redis and public 443 only; off when disabled', async () => {
    const { manifests } = await render({
      set: {
        'networkPolicy.metricsScrapers[0].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name': 'monitoring',
      },
    });
    const policy = one(manifests, 'NetworkPolicy', 'keybrake');
    const podLabels = one(manifests, 'Deployment').spec.template.metadata.labels;
    expect(selects(policy.spec.podSelector.matchLabels, podLabels)).toBe(true);
    expect(policy.spec.policyTypes).toEqual(['Ingress', 'Egress']);
    expect(policy.spec.ingress).toEqual([
      {
        from: [
          { podSelector: { matchLabels: { 'keybrake.io/client': 'true' } } },
          { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } },
        ],
        ports: [{ port: 'http', protocol: 'TCP' }],
      },
    ]);
    const [dns, redis, vendors, ...rest] = policy.spec.egress;
    expect(rest).toEqual([]);
    expect(dns.ports).toEqual([
      { port: 53, protocol: 'UDP' },
      { port: 53, protocol: 'TCP' },
    ]);
    const redisLabels = one(manifests, 'StatefulSet').spec.template.metadata.labels;
    expect(selects(redis.to[0].podSelector.matchLabels, redisLabels)).toBe(true);
    expect(vendors.ports).toEqual([{ port: 443, protocol: 'TCP' }]);
    expect(vendors.to[0].ipBlock.cidr).toBe('0.0.0.0/0');
    expect(vendors.to[0].ipBlock.except).toEqual(expect.arrayContaining(['10.0.0.0/8', '169.254.0.0/16']));
    // Redis: reachable by the proxy pods only, reaching nothing.
    const redisPolicy = one(manifests, 'NetworkPolicy', 'keybrake-redis');
    expect(selects(redisPolicy.spec.ingress[0].from[0].podSelector.matchLabels, podLabels)).toBe(true);
    expect(redisPolicy.spec.egress).toEqual([]);

    const off = await render({ valuesFiles: [join(CI_VALUES_DIR, 'no-networkpolicy-values.yaml')] });
    expect(byKind(off.manifests, 'NetworkPolicy')).toEqual([]);
  });

  it('Prometheus: scrape annotations on the pods by default; a ServiceMonitor on the proxy Service when asked', async () => {
    const { manifests } = await render();
    expect(one(manifests, 'Deployment').spec.template.metadata.annotations).toMatchObject({
      'prometheus.io/scrape': 'true',
      'prometheus.io/port': '8080',
      'prometheus.io/path': '/metrics',
    });
    expect(byKind(manifests, 'ServiceMonitor')).toEqual([]);

    const monitored = await render({ valuesFiles: [join(CI_VALUES_DIR, 'servicemonitor-values.yaml')] });
    const monitor = one(monitored.manifests, 'ServiceMonitor');
    expect(monitor.metadata.labels.release).toBe('prometheus');
    const services = byKind(monitored.manifests, 'Service').filter((s) =>
      selects(monitor.spec.selector.matchLabels, s.metadata.labels),
    );
    expect(services.map((s) => s.metadata.name)).toEqual(['keybrake']);
    expect(services[0]!.spec.ports.map((p: any) => p.name)).toContain(monitor.spec.endpoints[0].port);
    expect(monitor.spec.endpoints[0].path).toBe('/metrics');
    expect(one(monitored.manifests, 'Deployment').spec.template.metadata.annotations['prometheus.io/scrape']).toBe(
      undefined,
    );
  });
});

describe('plain manifests templates/kubernetes/manifests (kubectl apply -k)', () => {
  it('keybrake.yaml is exactly `helm template` of the chart with manifests.values.yaml (run scripts/render-kubernetes-manifests.sh after changing the chart)', async () => {
    const { text } = await render({ valuesFiles: [MANIFESTS_VALUES] });
    const committed = readFileSync(join(MANIFESTS_DIR, 'keybrake.yaml'), 'utf8');
    expect(committed === text, 'templates/kubernetes/manifests/keybrake.yaml drifted from the chart').toBe(true);
  });

  it('the kustomization lists every manifest file of the folder, each of which passes its schema', () => {
    const kustomization = parseManifests(readFileSync(join(MANIFESTS_DIR, 'kustomization.yaml'), 'utf8'))[0]!;
    expect(kustomization.kind).toBe('Kustomization');
    expect(kustomization.namespace).toBe('keybrake');
    const files = readdirSync(MANIFESTS_DIR).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml');
    expect([...(kustomization.resources as string[])].sort()).toEqual(files.sort());
    for (const file of files) {
      for (const manifest of parseManifests(readFileSync(join(MANIFESTS_DIR, file), 'utf8'))) {
        expect(() => validateManifest(manifest), `${file}: ${manifest.kind}`).not.toThrow();
      }
    }
  });

  it('kustomize build (what kubectl apply -k runs) yields the namespace and every rendered object in it, each passing its schema', async () => {
    const binary = process.env.KUSTOMIZE_BIN;
    if (!binary)
      throw new Error('KUSTOMIZE_BIN is not set: run the tests with `pnpm test` (scripts/install-kustomize.sh).');
    const { stdout } = await run(binary, ['build', MANIFESTS_DIR], { maxBuffer: 16 * 1024 * 1024 });
    const built = parseManifests(stdout);
    for (const manifest of built) {
      expect(() => validateManifest(manifest), `${manifest.kind} ${manifest.metadata.name}`).not.toThrow();
      if (manifest.kind !== 'Namespace') expect(manifest.metadata.namespace).toBe('keybrake');
    }
    const { manifests } = await render({ valuesFiles: [MANIFESTS_VALUES] });
    const names = (list: readonly Manifest[]) => list.map((m) => `${m.kind}/${m.metadata.name}`).sort();
    expect(names(built)).toEqual([...names(manifests), 'Namespace/keybrake'].sort());
  });

  it('the Deployment runs the Dockerfile’s command in its WORKDIR, as its non-root user', async () => {
    const dockerfile = readFileSync(DOCKERFILE, 'utf8');
    const lastStage = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
    const cmd = JSON.parse(/^CMD (\[.*\])$/m.exec(lastStage)![1]!);
    const workdir = /^WORKDIR (\S+)$/m.exec(lastStage)![1];
    const user = /^USER (\d+):(\d+)$/m.exec(lastStage)!;
    const { manifests } = await render();
    const container = proxyContainer(manifests);
    expect(container.command).toEqual(cmd);
    expect(container.workingDir).toBe(workdir);
    const pod = one(manifests, 'Deployment').spec.template.spec;
    expect(String(pod.securityContext.runAsUser)).toBe(user[1]);
    expect(String(pod.securityContext.runAsGroup)).toBe(user[2]);
    const env = Object.fromEntries(container.env.map((e: any) => [e.name, e.value]));
    expect(lastStage).toContain(`KEYBRAKE_DATA_DIR=${env.KEYBRAKE_DATA_DIR}`);
    expect(lastStage).toContain(`VOLUME ["${env.KEYBRAKE_DATA_DIR}"]`);
  });
});
