export { createKeybrakeActivities, type KeybrakeActivities, type KeybrakeActivitiesOptions } from './activities.js';
export {
  KeybrakeActivityInboundInterceptor,
  keybrakeActivityInterceptors,
  type KeybrakeActivityInterceptorOptions,
} from './activity-interceptor.js';
export { keybrake, type KeybrakeActivityContext } from './activity-context.js';
export { toTemporalFailure } from './failures.js';
export { sealVaultKey, unsealVaultKey } from './seal.js';
export {
  CAP_EXHAUSTED_FAILURE,
  TAINTED_REQUEST_REFUSED_FAILURE,
  VENDOR_RATE_LIMITED_FAILURE,
  RATE_LIMITED_FAILURE,
  CONCURRENCY_LIMITED_FAILURE,
  VAULT_KEY_HEADER,
  refusalFailureType,
  type VaultKeyRef,
} from './constants.js';

/** Path of the workflow interceptors module, for `Worker.create({ interceptors: { workflowModules: [...] } })`. */
export const keybrakeWorkflowInterceptorsPath = new URL('./workflow-interceptors.js', import.meta.url).pathname;
