import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CHART_DIR, KUBE_VERSION, helm, one, parseManifests } from './chart.js';

const template = (...args: string[]) =>
  helm(['template', 'keybrake', CHART_DIR, '--namespace', 'keybrake', '--kube-version', KUBE_VERSION, ...args]);

function valuesFile(values: unknown): string {
  const file = join(mkdtempSync(join(tmpdir(), 'keybrake-issuers-')), 'values.yaml');
  writeFileSync(file, JSON.stringify(values));
  return file;
}

const ISSUERS_FILE = `issuers:
  - issuer: https://kubernetes.default.svc.cluster.local
    jwks_file: cluster-jwks.json
    audiences: [keybrake]
    algorithms: [RS256]
policies:
  - name: argo
    match: { iss: https://kubernetes.default.svc.cluster.local, kubernetes.io.namespace: argo }
    grant: { vendors: [stripe], max_usd_cap: 50 }
`;
const JWKS = '{"keys":[]}';

describe('issue 25: the Helm chart configures the issuers file (workloadIdentity)', () => {
  it('the file and its JWKS files in a ConfigMap the chart makes, the folder mounted where KEYBRAKE_ISSUERS_FILE points', async () => {
    const output = await template(
      '--values',
      valuesFile({ workloadIdentity: { issuersFile: ISSUERS_FILE, jwksFiles: { 'cluster-jwks.json': JWKS } } }),
    );
    expect(output.stderr).toBe('');
    const manifests = parseManifests(output.stdout);
    expect(one(manifests, 'ConfigMap', 'keybrake-issuers-file').data).toEqual({
      'issuers.yaml': ISSUERS_FILE,
      'cluster-jwks.json': JWKS,
    });
    expect(one(manifests, 'ConfigMap', 'keybrake').data.KEYBRAKE_ISSUERS_FILE).toBe(
      '/etc/keybrake/issuers/issuers.yaml',
    );
    const pod = one(manifests, 'Deployment').spec.template.spec;
    const mount = pod.containers[0].volumeMounts.find((m: any) => m.name === 'issuers-file');
    expect(mount).toEqual({ name: 'issuers-file', mountPath: '/etc/keybrake/issuers', readOnly: true });
    // Every key of the ConfigMap (no items list, no subPath): the JWKS files sit beside issuers.yaml
    // and a changed one reaches the running pod.
    expect(pod.volumes.find((v: any) => v.name === 'issuers-file').configMap).toEqual({
      name: 'keybrake-issuers-file',
    });
    // The file changing rolls the pods (the checksum covers its ConfigMap).
    const changed = parseManifests(
      (
        await template(
          '--values',
          valuesFile({
            workloadIdentity: {
              issuersFile: ISSUERS_FILE.replace('50', '60'),
              jwksFiles: { 'cluster-jwks.json': JWKS },
            },
          }),
        )
      ).stdout,
    );
    const checksum = (m: typeof manifests) =>
      one(m, 'Deployment').spec.template.metadata.annotations['checksum/config'] as string;
    expect(checksum(changed)).not.toBe(checksum(manifests));
  });

  it('or a ConfigMap you made', async () => {
    const output = await template('--set', 'workloadIdentity.existingConfigMap=my-issuers');
    expect(output.stderr).toBe('');
    const manifests = parseManifests(output.stdout);
    expect(manifests.filter((m) => m.kind === 'ConfigMap').map((m) => m.metadata.name)).not.toContain(
      'keybrake-issuers-file',
    );
    expect(one(manifests, 'ConfigMap', 'keybrake').data.KEYBRAKE_ISSUERS_FILE).toBe(
      '/etc/keybrake/issuers/issuers.yaml',
    );
    const pod = one(manifests, 'Deployment').spec.template.spec;
    expect(pod.volumes.find((v: any) => v.name === 'issuers-file').configMap).toEqual({ name: 'my-issuers' });
  });

  it('nothing of it without workloadIdentity (issuer keys only)', async () => {
    const manifests = parseManifests((await template()).stdout);
    expect(one(manifests, 'ConfigMap', 'keybrake').data.KEYBRAKE_ISSUERS_FILE).toBeUndefined();
    const pod = one(manifests, 'Deployment').spec.template.spec;
    expect(pod.volumes.map((v: any) => v.name)).not.toContain('issuers-file');
    expect(manifests.map((m) => m.metadata.name)).not.toContain('keybrake-issuers-file');
  });

  it.each([
    [
      'both a file and a ConfigMap',
      'workloadIdentity.issuersFile=issuers: [],workloadIdentity.existingConfigMap=x',
      'set issuersFile or existingConfigMap, not both',
    ],
    [
      'JWKS files with no issuers file',
      'workloadIdentity.jwksFiles.k\\.json=x',
      'workloadIdentity.jwksFiles: set workloadIdentity.issuersFile',
    ],
    [
      'a JWKS file named like the issuers file',
      'workloadIdentity.issuersFile=issuers: [],workloadIdentity.jwksFiles.issuers\\.yaml=x',
      'issuers.yaml is the issuers file itself',
    ],
    ['a path instead of the file', 'workloadIdentity.issuersFile=./issuers.yaml', "'/workloadIdentity/issuersFile'"],
    [
      'a JWKS file name with a slash',
      'workloadIdentity.issuersFile=issuers: [],workloadIdentity.jwksFiles.a/b=x',
      "'a/b' does not match pattern",
    ],
    ['KEYBRAKE_ISSUERS_FILE in extraEnv', 'config.extraEnv.KEYBRAKE_ISSUERS_FILE=/x', 'this one is set by the chart'],
    ['an unknown field', 'workloadIdentity.issuers=x', 'issuers'],
  ])('refuses %s', async (_what, set, message) => {
    const output = await template('--set', set);
    expect(output.code).not.toBe(0);
    expect(output.stderr).toContain(message);
  });
});
