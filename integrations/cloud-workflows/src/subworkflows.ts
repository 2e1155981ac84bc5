import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { isMap, isSeq, parseDocument, type Document } from 'yaml';
import { InvalidWorkflowSourceError, SubworkflowNameClashError } from './errors.js';

/** Where this package keeps its copy of the repository's `templates/cloud-workflows`. */
export const CLOUD_WORKFLOWS_TEMPLATES_DIR = fileURLToPath(new URL('../templates', import.meta.url));

/** The template: Keybrake's subworkflows and the example `main`. */
export const SUBWORKFLOWS_FILE = `${CLOUD_WORKFLOWS_TEMPLATES_DIR}/keybrake.subworkflows.yaml`;

/** The template's source as it ships (importable as it is: subworkflows plus the example `main`). */
export function subworkflowsSource(): string {
  return readFileSync(SUBWORKFLOWS_FILE, 'utf8');
}

/** The names of Keybrake's subworkflows (every top-level definition of the template but `main`). */
export function subworkflowNames(): string[] {
  return topLevelNames(parseWorkflow(subworkflowsSource(), SUBWORKFLOWS_FILE)).filter((name) => name !== 'main');
}

/** Options of {@link mergeSubworkflows}. */
export interface MergeOptions {
  /**
   * Also take the template's example `main` when the user's source has none (to run the example
   * as it is, or to start from it).
   * @default false
   */
  readonly includeExampleMain?: boolean;
}

function parseWorkflow(source: string, what: string): Document {
  const document = parseDocument(source);
  if (document.errors.length > 0) {
    throw new InvalidWorkflowSourceError(`${what} is not valid YAML/JSON: ${document.errors[0]?.message}`);
  }
  return document;
}

function topLevelNames(document: Document): string[] {
  if (!isMap(document.contents)) return [];
  return document.contents.items.map((pair) => String((pair.key as { value?: unknown })?.value ?? pair.key));
}

/**
 * Adds Keybrake's subworkflows to a user's workflow source (YAML or JSON; a map of subworkflows
 * with a `main`, or a plain list of steps, which becomes `main`) and returns the merged YAML. The
 * user's definitions, comments and order are kept; ours are appended. A name the user already
 * defines is refused with {@link SubworkflowNameClashError}, never overwritten.
 */
export function mergeSubworkflows(userSource: string, options: MergeOptions = {}): string {
  const user = parseWorkflow(userSource, 'The workflow source');
  if (isSeq(user.contents)) {
    const steps = user.contents;
    user.contents = user.createNode({ main: { steps: [] } });
    (user.getIn(['main']) as { set(key: string, value: unknown): void }).set('steps', steps);
  } else if (!isMap(user.contents)) {
    throw new InvalidWorkflowSourceError(
      'The workflow source must be a map of subworkflows (with `main`) or a list of steps.',
    );
  }
  const ours = parseWorkflow(subworkflowsSource(), SUBWORKFLOWS_FILE);
  const userNames = new Set(topLevelNames(user));
  const clashes = topLevelNames(ours).filter((name) => name !== 'main' && userNames.has(name));
  if (clashes.length > 0) throw new SubworkflowNameClashError(clashes);
  if (!isMap(ours.contents) || !isMap(user.contents)) throw new InvalidWorkflowSourceError('Unreadable template.');
  for (const pair of ours.contents.items) {
    const name = String((pair.key as { value?: unknown }).value);
    if (name === 'main' && (userNames.has('main') || options.includeExampleMain !== true)) continue;
    user.contents.items.push(pair);
  }
  if (!userNames.has('main') && options.includeExampleMain !== true) {
    throw new InvalidWorkflowSourceError('The workflow source has no `main`.');
  }
  return user.toString({ lineWidth: 0 });
}
