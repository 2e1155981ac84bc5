// Copies each engine's templates into the integration package that ships them (its `files`),
// so a published package carries the same YAML/JSON as templates/ in this repository.
import { cpSync, rmSync } from 'node:fs';

const root = new URL('..', import.meta.url);
for (const engine of ['conductor', 'argo', 'cloud-workflows']) {
  const target = new URL(`integrations/${engine}/templates`, root);
  rmSync(target, { recursive: true, force: true });
  cpSync(new URL(`templates/${engine}`, root), target, { recursive: true });
}
