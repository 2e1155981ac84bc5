import { Role } from 'kubernetes-models/rbac.authorization.k8s.io/v1/Role';
import { RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';

/** The service account the examples' workflows run as. */
export const WORKFLOW_SERVICE_ACCOUNT = 'keybrake-workflow';

/**
 * What a workflow using the `keybrake` templates needs, in its namespace:
 * - `secrets` `create` (issue: the per-workflow vault-key Secret) and `delete` (revoke: deletes
 *   it early). No `get`/`list`/`watch`: the steps never read a Secret through the API, the
 *   kubelet hands it to the container. `create` cannot be narrowed to names but cannot overwrite
 *   an existing Secret; `delete` can: drop it if that is too much power in the namespace (the
 *   Secrets still go with their Workflow, which owns them).
 * - `workflowtaskresults` `create`/`patch`: what Argo's executor needs in every pod (v3.4+).
 * No `workflowtasksets` rules: the templates use no `http` steps, so no agent pod runs.
 *
 * The admin steps' projected token (issue 25) needs no rule: the kubelet requests it for the pod
 * (TokenRequest). The proxy identifies the caller by this account: its token's
 * `kubernetes.io.serviceaccount.name` is `keybrake-workflow`, `kubernetes.io.namespace` the
 * workflow's namespace; the proxy's issuers file maps those to a policy (what it may issue).
 */
export function workflowRbac(namespace?: string): [ServiceAccount, Role, RoleBinding] {
  const metadata = {
    name: WORKFLOW_SERVICE_ACCOUNT,
    ...(namespace ? { namespace } : {}),
    labels: { 'app.kubernetes.io/name': 'keybrake' },
  };
  return [
    new ServiceAccount({ metadata }),
    new Role({
      metadata,
      rules: [
        { apiGroups: [''], resources: ['secrets'], verbs: ['create', 'delete'] },
        { apiGroups: ['argoproj.io'], resources: ['workflowtaskresults'], verbs: ['create', 'patch'] },
      ],
    }),
    new RoleBinding({
      metadata,
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: WORKFLOW_SERVICE_ACCOUNT },
      subjects: [{ kind: 'ServiceAccount', name: WORKFLOW_SERVICE_ACCOUNT, ...(namespace ? { namespace } : {}) }],
    }),
  ];
}
