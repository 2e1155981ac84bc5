#!/usr/bin/env node
// `pnpm generate:argo`: writes templates/argo/ from the builders (validated first).
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { argoTemplateFiles, renderArgoTemplateFile } from './render.js';

const target = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'templates', 'argo');
for (const file of argoTemplateFiles()) {
  for (const document of file.documents) document.validate();
  const path = join(target, file.path);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, renderArgoTemplateFile(file));
  process.stdout.write(`wrote templates/argo/${file.path}\n`);
}
