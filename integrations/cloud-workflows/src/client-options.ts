import type { ExecutionsClient } from '@google-cloud/workflows';
import { credentials } from '@grpc/grpc-js';

/** What `WorkflowsClient`/`ExecutionsClient` of `@google-cloud/workflows` take (google-gax `ClientOptions`). */
export type WorkflowsClientOptions = NonNullable<ConstructorParameters<typeof ExecutionsClient>[0]>;

/**
 * Client options for an endpoint that speaks the Workflows and Executions gRPC APIs: Google's
 * (no argument: the library's defaults, Application Default Credentials), or any other on
 * `host:port` (an emulator, a test server) without TLS or credentials.
 */
export function workflowsClientOptions(endpoint?: string): WorkflowsClientOptions {
  if (endpoint === undefined || endpoint === '') return {};
  const url = new URL(endpoint.includes('://') ? endpoint : `http://${endpoint}`);
  if (url.port === '') throw new Error(`The endpoint ${endpoint} has no port (expected host:port).`);
  return {
    apiEndpoint: url.hostname.replace(/^\[|\]$/g, ''),
    port: Number(url.port),
    // Plain-text gRPC: with sslCreds set the library also skips Google credentials.
    sslCreds: credentials.createInsecure(),
  };
}
