import { createRequire } from 'node:module';
import { protos } from '@google-cloud/workflows';
import { Server, ServerCredentials, loadPackageDefinition, status, type GrpcObject } from '@grpc/grpc-js';
import { fromJSON } from '@grpc/proto-loader';

const require = createRequire(import.meta.url);

/** What the fake keeps: deployed workflows and executions, and every request it was sent. */
export interface FakeWorkflowsServer {
  /** `host:port`, plain text. */
  readonly endpoint: string;
  readonly workflows: Map<string, { sourceContents: string; callLogLevel: string; revision: number }>;
  readonly executions: Map<string, { argument: string; callLogLevel: string; polls: number }>;
  /** Which RPCs were called, in order. */
  readonly calls: string[];
  stop(): Promise<void>;
}

/** How the fake ends an execution of a given argument, after `pollsBeforeEnd` GetExecution calls. */
export type ExecutionScript = (argument: Record<string, unknown>) => { result?: unknown; errorPayload?: unknown };

type Call<T> = { request: T };
type Callback = (error: { code: number; details: string } | null, response?: unknown) => void;

/**
 * A FAKE of Google's Workflows and Executions gRPC services (our own, in-process), built from the
 * service definitions that `@google-cloud/workflows` ships (`build/protos/protos.json`). Nothing
 * real that speaks these APIs runs here (workflows-emulator only has a synchronous REST route),
 * so this checks that the clients this package makes reach any such endpoint, without TLS or
 * credentials, and that deploy and run drive the APIs as Google documents them.
 */
export async function startFakeWorkflowsServer(
  script: ExecutionScript,
  options: { pollsBeforeEnd?: number } = {},
): Promise<FakeWorkflowsServer> {
  const definition = fromJSON(require('@google-cloud/workflows/build/protos/protos.json') as object, {
    keepCase: false,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const loaded = loadPackageDefinition(definition) as unknown as {
    google: { cloud: { workflows: { v1: GrpcObject; executions: { v1: GrpcObject } } } };
  };
  const workflowsService = (loaded.google.cloud.workflows.v1.Workflows as unknown as { service: never }).service;
  const executionsService = (loaded.google.cloud.workflows.executions.v1.Executions as unknown as { service: never })
    .service;
  const workflows: FakeWorkflowsServer['workflows'] = new Map();
  const executions: FakeWorkflowsServer['executions'] = new Map();
  const calls: string[] = [];
  const pollsBeforeEnd = options.pollsBeforeEnd ?? 2;

  const workflowMessage = (name: string) => {
    const workflow = workflows.get(name)!;
    return {
      name,
      state: 'ACTIVE',
      revisionId: `00000${workflow.revision}-fake`,
      sourceContents: workflow.sourceContents,
      callLogLevel: workflow.callLogLevel,
    };
  };
  // A finished long-running operation carrying the workflow, packed as google.protobuf.Any.
  const operation = (name: string) => ({
    name: `${name}/operations/${calls.length}`,
    done: true,
    response: {
      typeUrl: 'type.googleapis.com/google.cloud.workflows.v1.Workflow',
      value: Buffer.from(
        protos.google.cloud.workflows.v1.Workflow.encode(
          protos.google.cloud.workflows.v1.Workflow.fromObject(workflowMessage(name)),
        ).finish(),
      ),
    },
  });
  const notFound = (callback: Callback, what: string) =>
    callback({ code: status.NOT_FOUND, details: `${what} not found` });

  const server = new Server();
  server.addService(workflowsService, {
    GetWorkflow: ({ request }: Call<{ name: string }>, callback: Callback) => {
      calls.push('GetWorkflow');
      if (!workflows.has(request.name)) return notFound(callback, request.name);
      callback(null, workflowMessage(request.name));
    },
    CreateWorkflow: (
      {
        request,
      }: Call<{ parent: string; workflowId: string; workflow: { sourceContents: string; callLogLevel: string } }>,
      callback: Callback,
    ) => {
      calls.push('CreateWorkflow');
      const name = `${request.parent}/workflows/${request.workflowId}`;
      workflows.set(name, {
        sourceContents: request.workflow.sourceContents,
        callLogLevel: request.workflow.callLogLevel,
        revision: 1,
      });
      callback(null, operation(name));
    },
    UpdateWorkflow: (
      {
        request,
      }: Call<{
        workflow: { name: string; sourceContents: string; callLogLevel: string };
        updateMask: { paths: string[] };
      }>,
      callback: Callback,
    ) => {
      calls.push(`UpdateWorkflow(${request.updateMask.paths.join(',')})`);
      const existing = workflows.get(request.workflow.name);
      if (!existing) return notFound(callback, request.workflow.name);
      workflows.set(request.workflow.name, {
        sourceContents: request.workflow.sourceContents,
        callLogLevel: request.workflow.callLogLevel,
        revision: existing.revision + 1,
      });
      callback(null, operation(request.workflow.name));
    },
  });
  server.addService(executionsService, {
    CreateExecution: (
      { request }: Call<{ parent: string; execution: { argument: string; callLogLevel: string } }>,
      callback: Callback,
    ) => {
      calls.push('CreateExecution');
      if (!workflows.has(request.parent)) return notFound(callback, request.parent);
      const name = `${request.parent}/executions/${executions.size + 1}`;
      executions.set(name, {
        argument: request.execution.argument,
        callLogLevel: request.execution.callLogLevel,
        polls: 0,
      });
      callback(null, { name, state: 'ACTIVE', argument: request.execution.argument });
    },
    GetExecution: ({ request }: Call<{ name: string }>, callback: Callback) => {
      calls.push('GetExecution');
      const execution = executions.get(request.name);
      if (!execution) return notFound(callback, request.name);
      execution.polls += 1;
      if (execution.polls < pollsBeforeEnd) return callback(null, { name: request.name, state: 'ACTIVE' });
      const end = script(JSON.parse(execution.argument) as Record<string, unknown>);
      callback(
        null,
        end.errorPayload === undefined
          ? { name: request.name, state: 'SUCCEEDED', result: JSON.stringify(end.result) }
          : {
              name: request.name,
              state: 'FAILED',
              error: { payload: JSON.stringify(end.errorPayload), context: 'raised in main' },
            },
      );
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (error, bound) =>
      error ? reject(error) : resolve(bound),
    ),
  );
  return {
    endpoint: `127.0.0.1:${port}`,
    workflows,
    executions,
    calls,
    stop: () =>
      new Promise<void>((resolve) => {
        server.tryShutdown(() => resolve());
      }),
  };
}
