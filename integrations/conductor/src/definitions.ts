import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Client, ExtendedTaskDef, ExtendedWorkflowDef } from '@io-orkes/conductor-javascript';
import { MetadataClient } from '@io-orkes/conductor-javascript';

/** Task and workflow definitions, as Conductor's metadata API takes them. */
export interface ConductorDefinitions {
  readonly taskDefs: ExtendedTaskDef[];
  readonly workflowDefs: ExtendedWorkflowDef[];
}

/** Where this package keeps its copy of the repository's `templates/conductor`. */
export const CONDUCTOR_TEMPLATES_DIR = fileURLToPath(new URL('../templates', import.meta.url));

/**
 * Reads the Conductor definitions under `dir`: every `*.json` file holding an array is a list of
 * task definitions, every one holding an object a workflow definition. Subdirectories are read
 * when listed in `include` (the example is `billing-agent`).
 */
export async function loadConductorDefinitions(
  options: { dir?: string; include?: readonly string[] } = {},
): Promise<ConductorDefinitions> {
  const dir = options.dir ?? CONDUCTOR_TEMPLATES_DIR;
  const taskDefs: ExtendedTaskDef[] = [];
  const workflowDefs: ExtendedWorkflowDef[] = [];
  for (const folder of ['.', ...(options.include ?? [])]) {
    const files = (await readdir(join(dir, folder))).filter((file) => file.endsWith('.json')).sort();
    for (const file of files) {
      const parsed = JSON.parse(await readFile(join(dir, folder, file), 'utf8')) as unknown;
      if (Array.isArray(parsed)) taskDefs.push(...(parsed as ExtendedTaskDef[]));
      else workflowDefs.push(parsed as ExtendedWorkflowDef);
    }
  }
  return { taskDefs, workflowDefs };
}

/**
 * Registers task definitions, then workflow definitions (overwriting the same name and version),
 * with a Conductor server. Safe to run again: it converges on the given definitions.
 */
export async function registerConductorDefinitions(client: Client, definitions: ConductorDefinitions): Promise<void> {
  const metadata = new MetadataClient(client);
  if (definitions.taskDefs.length > 0) await metadata.registerTasks(definitions.taskDefs);
  // Failure workflows first: a workflow naming a failureWorkflow that is not registered yet
  // would start nothing when it fails.
  const ordered = [...definitions.workflowDefs].sort(
    (a, b) => Number(Boolean(a.failureWorkflow)) - Number(Boolean(b.failureWorkflow)),
  );
  for (const workflowDef of ordered) await metadata.registerWorkflowDef(workflowDef, true);
}
