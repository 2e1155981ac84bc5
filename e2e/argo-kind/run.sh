#!/usr/bin/env bash
# Full e2e of the Argo integration on a kind cluster, for a Docker host:
#   kind cluster (pinned kind, its default node image) -> Argo Workflows (pinned release) ->
#   the proxy image built from ./Dockerfile and loaded into kind -> the Helm chart
#   (templates/kubernetes/keybrake, bundled Redis, Stripe pointed at an in-cluster stripe-mock) ->
#   templates/argo (RBAC, the keybrake WorkflowTemplate; the steps authenticate with their projected
#   service-account token, trusted through the chart's workloadIdentity values) -> the examples.
# Asserts (e2e/argo-kind/assert.mjs): billing-agent's fan-out stops at the cap (12 of 20 $25
# charges under $300, spend exactly $300), every cap-hit step ran once and exited 75 (never
# retried), the key is revoked on exit and the vault-key Secret is gone; support-agent's
# untrusted step is refused (exit 76, once) while its sibling charges, and the workflow succeeds.
#
# Written for a Docker host and NOT run where it was written (no Docker there). Without a working
# Docker it prints an explicit SKIP and exits 0. Logs are collected on failure into
# $E2E_LOGS (default e2e/argo-kind/logs/<time>). KEEP_CLUSTER=1 keeps the cluster.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh

KIND_VERSION="${KIND_VERSION:-v0.27.0}"
KUBECTL_VERSION="${KUBECTL_VERSION:-v1.32.2}"
# The Argo release the cluster runs: the version whose CLI lints the templates in CI
# (scripts/install-argo.sh). It runs only inside this throwaway cluster.
ARGO_VERSION="${ARGO_VERSION:-v4.0.5}"
STRIPE_MOCK_IMAGE="${STRIPE_MOCK_IMAGE:-stripe/stripe-mock:v0.203.0}"
CLUSTER="${KIND_CLUSTER:-keybrake-e2e}"
WAIT="${E2E_WAIT_SECONDS:-900}"
E2E_LOGS="${E2E_LOGS:-e2e/argo-kind/logs/$(date -u +%Y%m%dT%H%M%SZ)}"
ISSUER_KEY="kb_admin_e2e_$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
STRIPE_KEY="sk_test_e2e_$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"

say() { printf 'e2e/argo-kind: %s\n' "$*" >&2; }
die() { say "FAILED: $*"; exit 1; }

if ! command -v docker >/dev/null 2>&1; then
  say "SKIP: no docker command on this machine; the kind e2e needs a Docker host. Nothing was run."
  exit 0
fi
if ! docker_info="$(docker info --format '{{.ServerVersion}}' 2>&1)"; then
  say "SKIP: docker cannot reach a daemon ($docker_info); the kind e2e needs a Docker host. Nothing was run."
  exit 0
fi
say "Docker $docker_info"

# Tools, pinned, cached like the other installers.
arch="$(uname -m)"; case "$arch" in x86_64) arch=amd64 ;; aarch64 | arm64) arch=arm64 ;; esac
os="$(uname -s | tr '[:upper:]' '[:lower:]')"
KIND="$KEYBRAKE_CACHE_DIR/bin/kind-$KIND_VERSION"
if [ ! -x "$KIND" ]; then
  if command -v go >/dev/null; then
    KIND="$(go_install_cached kind sigs.k8s.io/kind "$KIND_VERSION")"
  else
    curl -fsSL --retry 3 -o "$KIND.tmp" "https://kind.sigs.k8s.io/dl/$KIND_VERSION/kind-$os-$arch" && chmod +x "$KIND.tmp" && mv "$KIND.tmp" "$KIND"
  fi
fi
KUBECTL="$KEYBRAKE_CACHE_DIR/bin/kubectl-$KUBECTL_VERSION"
if [ ! -x "$KUBECTL" ]; then
  curl -fsSL --retry 3 -o "$KUBECTL.tmp" "https://dl.k8s.io/release/$KUBECTL_VERSION/bin/$os/$arch/kubectl" \
    || die "could not download kubectl $KUBECTL_VERSION"
  chmod +x "$KUBECTL.tmp" && mv "$KUBECTL.tmp" "$KUBECTL"
fi
HELM="$(bash scripts/install-helm.sh)"
kubectl() { "$KUBECTL" --context "kind-$CLUSTER" "$@"; }

collect_logs() {
  mkdir -p "$E2E_LOGS"
  say "collecting logs into $E2E_LOGS"
  kubectl get all,workflows,workflowtemplates,secrets -A -o wide >"$E2E_LOGS/objects.txt" 2>&1 || true
  kubectl -n argo get workflows -o yaml >"$E2E_LOGS/workflows.yaml" 2>&1 || true
  kubectl -n argo describe pods >"$E2E_LOGS/argo-pods.txt" 2>&1 || true
  kubectl -n keybrake describe pods >"$E2E_LOGS/keybrake-pods.txt" 2>&1 || true
  kubectl -n argo logs deploy/workflow-controller --tail=2000 >"$E2E_LOGS/workflow-controller.log" 2>&1 || true
  kubectl -n keybrake logs -l app.kubernetes.io/name=keybrake --all-containers --prefix --tail=5000 >"$E2E_LOGS/keybrake.log" 2>&1 || true
  for pod in $(kubectl -n argo get pods -o name 2>/dev/null); do
    kubectl -n argo logs "$pod" --all-containers --prefix >"$E2E_LOGS/$(basename "$pod").log" 2>&1 || true
  done
  kubectl get events -A --sort-by=.lastTimestamp >"$E2E_LOGS/events.txt" 2>&1 || true
}

created_cluster=0
port_forward=""
finish() {
  status=$?
  [ -n "$port_forward" ] && kill "$port_forward" 2>/dev/null || true
  [ "$status" != 0 ] && collect_logs
  if [ "$created_cluster" = 1 ] && [ "${KEEP_CLUSTER:-0}" != 1 ]; then
    "$KIND" delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
  fi
  [ "$status" = 0 ] && say "PASSED" || say "FAILED (exit $status); logs in $E2E_LOGS"
}
trap finish EXIT

if ! "$KIND" get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  say "creating kind cluster $CLUSTER (kind $KIND_VERSION, its default node image)"
  "$KIND" create cluster --name "$CLUSTER" --wait 180s
  created_cluster=1
fi

say "building the proxy image from ./Dockerfile and loading it into kind"
docker build -t keybrake/proxy:e2e . >&2
"$KIND" load docker-image keybrake/proxy:e2e --name "$CLUSTER" >&2

say "installing Argo Workflows $ARGO_VERSION"
kubectl create namespace argo --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl -n argo apply --server-side --force-conflicts \
  -f "https://github.com/argoproj/argo-workflows/releases/download/$ARGO_VERSION/install.yaml" >/dev/null
kubectl -n argo rollout status deploy/workflow-controller --timeout=300s

say "stripe-mock ($STRIPE_MOCK_IMAGE) and the Keybrake chart"
kubectl create namespace keybrake --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl -n keybrake apply -f - >/dev/null <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: { name: stripe-mock }
spec:
  selector: { matchLabels: { app: stripe-mock } }
  template:
    metadata: { labels: { app: stripe-mock } }
    spec:
      containers:
        - name: stripe-mock
          image: $STRIPE_MOCK_IMAGE
          ports: [{ containerPort: 12111 }]
          readinessProbe: { tcpSocket: { port: 12111 }, periodSeconds: 2 }
---
apiVersion: v1
kind: Service
metadata: { name: stripe-mock }
spec:
  selector: { app: stripe-mock }
  ports: [{ port: 12111, targetPort: 12111 }]
YAML
kubectl -n keybrake rollout status deploy/stripe-mock --timeout=300s
# Workload identity (issue 25), the templates' default: the proxy trusts the cluster's own
# service-account issuer, through a static JWKS (the proxy pod need not reach the API server), and
# lets the argo namespace's keybrake-workflow account issue Stripe keys.
E2E_TMP_CHART="$(mktemp -d)"
cluster_issuer="$(kubectl get --raw /.well-known/openid-configuration | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).issuer))')"
kubectl get --raw /openid/v1/jwks >"$E2E_TMP_CHART/cluster-jwks.json"
cat >"$E2E_TMP_CHART/issuers.yaml" <<ISSUERS
issuers:
  - issuer: $cluster_issuer
    jwks_file: cluster-jwks.json
    audiences: [keybrake]
    algorithms: [RS256]
policies:
  - name: argo-examples
    match:
      iss: $cluster_issuer
      kubernetes.io.namespace: argo
      kubernetes.io.serviceaccount.name: keybrake-workflow
    grant:
      vendors: [stripe]
      max_usd_cap: 300
      label_prefix: argo/
ISSUERS
# kind's CNI (kindnet) does not enforce NetworkPolicy, so the chart's is left off here.
"$HELM" upgrade --install keybrake templates/kubernetes/keybrake --kube-context "kind-$CLUSTER" \
  --namespace keybrake --wait --timeout 10m \
  --set-file "workloadIdentity.issuersFile=$E2E_TMP_CHART/issuers.yaml" \
  --set-file "workloadIdentity.jwksFiles.cluster-jwks\.json=$E2E_TMP_CHART/cluster-jwks.json" \
  --set image.repository=keybrake/proxy --set image.tag=e2e --set image.pullPolicy=Never \
  --set vendors.stripe.enabled=true --set "vendors.stripe.secretKey=$STRIPE_KEY" \
  --set config.stripeBaseUrl=http://stripe-mock.keybrake.svc:12111 \
  --set "issuerKeys.keys[0]=$ISSUER_KEY" \
  --set networkPolicy.enabled=false >&2
kubectl -n keybrake rollout status deploy/keybrake --timeout=300s

say "templates/argo: RBAC, the keybrake WorkflowTemplate (no issuer key Secret: the steps present their projected token)"
kubectl -n argo apply -f templates/argo/rbac.yaml -f templates/argo/keybrake-workflowtemplate.yaml >/dev/null

# The proxy's admin API from here, to check the key after the run.
port="$(node -e 'const s=require("net").createServer().listen(0,()=>{console.log(s.address().port);s.close()})')"
kubectl -n keybrake port-forward svc/keybrake "$port:8080" >/dev/null 2>&1 &
port_forward=$!

run_example() {
  local file="$1" name phase deadline
  name="$(kubectl -n argo create -f "$file" -o jsonpath='{.metadata.name}')"
  say "submitted $name ($file); waiting up to ${WAIT}s"
  deadline=$((SECONDS + WAIT))
  while :; do
    phase="$(kubectl -n argo get workflow "$name" -o jsonpath='{.status.phase}' 2>/dev/null || true)"
    case "$phase" in Succeeded | Failed | Error) break ;; esac
    [ "$SECONDS" -lt "$deadline" ] || die "$name still '${phase:-Pending}' after ${WAIT}s"
    sleep 5
  done
  # The exit handler's revoke has run once the workflow has a final phase.
  kubectl -n argo get workflow "$name" -o json >"$E2E_TMP/$name.json"
  kubectl -n argo get secrets -o json >"$E2E_TMP/$name.secrets.json"
  echo "$name"
}

E2E_TMP="$(mktemp -d)"
billing="$(run_example templates/argo/examples/billing-agent.yaml)"
support="$(run_example templates/argo/examples/support-agent.yaml)"
KEYBRAKE_URL="http://127.0.0.1:$port" KEYBRAKE_API_KEY="$ISSUER_KEY" \
  node e2e/argo-kind/assert.mjs "$E2E_TMP/$billing.json" "$E2E_TMP/$billing.secrets.json" \
  "$E2E_TMP/$support.json" "$E2E_TMP/$support.secrets.json"
