import { KEYBRAKE_EXIT_CODES, LIMIT_REFUSED_EXIT_CODE } from '@keybrake/client';

/**
 * The Python sources of the script steps. They run on `python:3.13-alpine` with the standard
 * library only (`urllib`, `json`, `ssl`): no image of ours, no `pip install`, no jq. Every value
 * comes from the environment (never pasted into the source, so a label cannot inject code), and
 * no script ever prints a vault key or an issuer key: stdout becomes `outputs.result` and pod
 * logs, both readable by anyone who can read the Workflow.
 */

/** Where the scripts write their output parameters (an emptyDir: the root filesystem is read-only). */
export const OUTPUT_DIR = '/tmp/keybrake';

/** Shared by the admin scripts: the admin API and the Kubernetes API, from the pod's own service account. */
const PRELUDE = String.raw`import base64
import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

OUTPUT_DIR = os.environ.get("KEYBRAKE_OUTPUT_DIR", ${JSON.stringify(OUTPUT_DIR)})
SERVICEACCOUNT_DIR = os.environ.get("KEYBRAKE_SERVICEACCOUNT_DIR", "/var/run/secrets/kubernetes.io/serviceaccount")


def fail(message):
    print("keybrake: " + message, file=sys.stderr)
    sys.exit(1)


def bearer():
    """What the step proves itself with (issue 25). service-account-token, the default: the
    projected token of the workflow's service account (audience keybrake), read on every attempt
    since the kubelet rotates it. issuer-key: the keybrake-issuer Secret. Never printed."""
    auth = os.environ.get("KEYBRAKE_AUTH", "service-account-token").strip()
    if auth == "issuer-key":
        key = os.environ.get("KEYBRAKE_API_KEY", "").strip()
        if not key:
            fail("auth is issuer-key but the keybrake-issuer Secret (key api-key) is missing or empty")
        return key
    if auth != "service-account-token":
        fail("auth must be service-account-token or issuer-key, not %r" % auth)
    path = os.environ.get("KEYBRAKE_TOKEN_FILE", "/var/run/secrets/keybrake/token")
    try:
        with open(path) as token_file:
            token = token_file.read().strip()
    except OSError as error:
        fail("cannot read the projected service-account token %s: %s" % (path, error.strerror))
    if not token or any(ch.isspace() for ch in token):
        fail("the projected service-account token %s is empty or not one token" % path)
    return token


def admin(method, path, body=None, attempts=1):
    """Calls the Keybrake admin API as bearer() says. Retries network errors and 502/503/504
    only when attempts > 1 (reads and revocations, never an issue)."""
    url = os.environ["KEYBRAKE_PROXY_URL"].rstrip("/") + path
    data = None if body is None else json.dumps(body).encode()
    for attempt in range(attempts):
        headers = {"authorization": "Bearer " + bearer(), "accept": "application/json"}
        if data is not None:
            headers["content-type"] = "application/json"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            try:
                answer = json.loads(error.read() or b"{}")
            except ValueError:
                answer = {}
            if error.code in (502, 503, 504) and attempt + 1 < attempts:
                time.sleep(2 ** attempt)
                continue
            return error.code, answer
        except (urllib.error.URLError, OSError) as error:
            if attempt + 1 < attempts:
                time.sleep(2 ** attempt)
                continue
            fail("cannot reach the Keybrake proxy at %s: %s" % (os.environ["KEYBRAKE_PROXY_URL"], error))


def refusal(status, answer):
    error = answer.get("error") or {}
    return "HTTP %s %s: %s" % (status, error.get("code", "?"), error.get("message", ""))


def kubernetes(method, path, body=None):
    """Calls the Kubernetes API as the pod's service account; returns the HTTP status."""
    host = os.environ["KUBERNETES_SERVICE_HOST"]
    if ":" in host:
        host = "[" + host + "]"
    url = "https://%s:%s%s" % (host, os.environ.get("KUBERNETES_SERVICE_PORT", "443"), path)
    with open(os.path.join(SERVICEACCOUNT_DIR, "token")) as token_file:
        token = token_file.read().strip()
    context = ssl.create_default_context(cafile=os.path.join(SERVICEACCOUNT_DIR, "ca.crt"))
    data = None if body is None else json.dumps(body).encode()
    headers = {"authorization": "Bearer " + token, "accept": "application/json", "content-type": "application/json"}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, OSError) as error:
        print("keybrake: cannot reach the Kubernetes API: %s" % error, file=sys.stderr)
        return 0


def output(name, value):
    os.makedirs(OUTPUT_DIR, exist_ok=True)
    with open(os.path.join(OUTPUT_DIR, name), "w") as output_file:
        output_file.write(value)
`;

/**
 * `issue-vault-key` and `issue-tainted-vault-key`: issues the key, stores it in a Secret owned by
 * the Workflow (deleted with it), and outputs only the key id and the Secret's name. If the
 * Secret cannot be written, the key is revoked before the step fails: no key is left that nobody
 * holds.
 */
export const ISSUE_SCRIPT = `${PRELUDE}

def cap(name):
    value = os.environ.get(name, "").strip()
    return None if value == "" else float(value)


expires_in = os.environ["KEYBRAKE_EXPIRES_IN"].strip()
body = {
    "vendor": os.environ["KEYBRAKE_VENDOR"],
    "allowed_endpoints": json.loads(os.environ["KEYBRAKE_ALLOWED_ENDPOINTS"]),
    "expires_in": int(expires_in) if expires_in.isdigit() else expires_in,
    "agent_run_label": os.environ["KEYBRAKE_LABEL"],
}
for field, variable in (("usd_cap", "KEYBRAKE_USD_CAP"), ("daily_usd_cap", "KEYBRAKE_DAILY_USD_CAP")):
    if cap(variable) is not None:
        body[field] = cap(variable)
if os.environ.get("KEYBRAKE_PARENT_KEY_ID", "").strip():
    body["parent_key_id"] = os.environ["KEYBRAKE_PARENT_KEY_ID"].strip()
if os.environ.get("KEYBRAKE_TAINTED", "false").strip().lower() == "true":
    body["tainted"] = True

status, answer = admin("POST", "/vault/keys", body)
if status != 201:
    fail("the proxy refused to issue a vault key: " + refusal(status, answer))
key_id = answer["key_id"]

namespace = os.environ["KEYBRAKE_NAMESPACE"]
secret_name = os.environ["KEYBRAKE_VAULT_KEY_SECRET"]
secret = {
    "apiVersion": "v1",
    "kind": "Secret",
    "type": "Opaque",
    "metadata": {
        "name": secret_name,
        "namespace": namespace,
        "labels": {"app.kubernetes.io/managed-by": "keybrake", "keybrake.dev/key-id": key_id},
        # Owned by the Workflow: Kubernetes deletes the Secret when the Workflow is deleted.
        "ownerReferences": [{
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Workflow",
            "name": os.environ["KEYBRAKE_WORKFLOW_NAME"],
            "uid": os.environ["KEYBRAKE_WORKFLOW_UID"],
            "blockOwnerDeletion": False,
        }],
    },
    "data": {
        "vault-key": base64.b64encode(answer["vault_key"].encode()).decode(),
        "key-id": base64.b64encode(key_id.encode()).decode(),
    },
}
path = "/api/v1/namespaces/%s/secrets" % urllib.parse.quote(namespace, safe="")
created = kubernetes("POST", path, secret)
if created == 409:
    # A retry of this step: the earlier attempt's Secret holds a key this attempt replaces.
    kubernetes("DELETE", "%s/%s" % (path, urllib.parse.quote(secret_name, safe="")))
    created = kubernetes("POST", path, secret)
if created not in (200, 201):
    revoked, _ = admin("DELETE", "/vault/keys/" + urllib.parse.quote(key_id, safe=""), attempts=3)
    fail("could not store the vault key in Secret %s (Kubernetes answered %s); key %s %s" % (
        secret_name, created or "nothing", key_id, "revoked" if revoked == 200 else "NOT revoked: it expires with its TTL"))

output("key-id", key_id)
output("vault-key-secret", secret_name)
output("expires-at", answer.get("expires_at", ""))
caps = "".join(", %s $%s" % (label, answer[field]) for label, field in (("cap", "usd_cap"), ("daily cap", "daily_usd_cap"))
               if answer.get(field) is not None)
print("keybrake: issued %s (%s, %s%s%s), vault key in Secret %s/%s" % (
    key_id, body["vendor"], body["agent_run_label"], caps, ", tainted" if body.get("tainted") else "", namespace, secret_name))
`;

/**
 * `revoke-vault-key`: revokes the key (and so its children), reports what the execution spent
 * and the workflow's status, and deletes the vault-key Secrets early (they are deleted with the
 * Workflow anyway). No key id (the issue step never succeeded): nothing to revoke.
 */
export const REVOKE_SCRIPT = `${PRELUDE}

key_id = os.environ.get("KEYBRAKE_KEY_ID", "").strip()
workflow_status = os.environ.get("KEYBRAKE_WORKFLOW_STATUS", "")
# An unresolved Argo variable (no global output: the issue step never succeeded) counts as none.
if key_id == "" or key_id.startswith("{" + "{"):
    print("keybrake: workflow %s: no vault key was issued, nothing to revoke" % workflow_status)
    output("spent-usd", "0")
    sys.exit(0)
quoted = urllib.parse.quote(key_id, safe="")
status, answer = admin("DELETE", "/vault/keys/" + quoted, attempts=4)
if status == 404:
    print("keybrake: workflow %s: key %s does not exist, nothing to revoke" % (workflow_status, key_id))
    output("spent-usd", "0")
    sys.exit(0)
if status != 200:
    fail("could not revoke key %s: %s" % (key_id, refusal(status, answer)))
status, state = admin("GET", "/vault/keys/" + quoted, attempts=4)
if status != 200:
    fail("key %s revoked, but its spend could not be read: %s" % (key_id, refusal(status, state)))
spent = state.get("spent_usd", 0)
output("spent-usd", str(spent))
caps = "".join("; %s $%s" % (label, state[field]) for label, field in (("cap", "usd_cap"), ("daily cap", "daily_usd_cap"))
               if state.get(field) is not None)
print("keybrake: workflow %s: key %s %s; spent $%s (reserved $%s%s)" % (
    workflow_status, key_id, state.get("status"), spent, state.get("reserved_usd", 0), caps))

namespace = os.environ["KEYBRAKE_NAMESPACE"]
for secret_name in [name.strip() for name in os.environ.get("KEYBRAKE_VAULT_KEY_SECRETS", "").split(",") if name.strip()]:
    deleted = kubernetes("DELETE", "/api/v1/namespaces/%s/secrets/%s" % (
        urllib.parse.quote(namespace, safe=""), urllib.parse.quote(secret_name, safe="")))
    if deleted not in (200, 202, 404):
        print("keybrake: Secret %s not deleted now (Kubernetes answered %s); it goes with the Workflow" % (
            secret_name, deleted or "nothing"), file=sys.stderr)
`;

/**
 * The exit-code mapping for user scripts, as Python: a final Keybrake refusal ends the process
 * with its code from {@link KEYBRAKE_EXIT_CODES} (75: cap hit); anything else exits 1 (retried).
 */
export const EXIT_CODE_MAPPING = String.raw`# Keybrake's exit codes (@keybrake/client KEYBRAKE_EXIT_CODES): a final refusal is never retried.
KEYBRAKE_EXIT_CODES = ${JSON.stringify(KEYBRAKE_EXIT_CODES)}
# A request or concurrency limit of the key (issue 26) is transient: its own code, retried.
KEYBRAKE_LIMIT_EXIT_CODE = ${LIMIT_REFUSED_EXIT_CODE}


def exit_for_refusal(error):
    """Ends the step for a vendor call the proxy refused for good, or by a limit; returns for anything else."""
    code = error.headers.get("X-Keybrake-Error")
    if code in KEYBRAKE_EXIT_CODES:
        print("keybrake: %s (%s); exiting %d, not retried" % (code, error.code, KEYBRAKE_EXIT_CODES[code]), file=sys.stderr)
        sys.exit(KEYBRAKE_EXIT_CODES[code])
    if code in ("rate_limited", "concurrency_limited"):
        import time
        wait = min(int(error.headers.get("Retry-After") or "1"), 300)
        print("keybrake: %s; waiting Retry-After %d s, exiting %d, retried" % (code, wait, KEYBRAKE_LIMIT_EXIT_CODE), file=sys.stderr)
        time.sleep(wait)
        sys.exit(KEYBRAKE_LIMIT_EXIT_CODE)
`;

/**
 * The examples' vendor step: one Stripe PaymentIntent through the proxy, with the vault key from
 * the environment and the idempotency key derived from the Workflow's stable identity.
 */
export const CHARGE_SCRIPT = String.raw`import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

${EXIT_CODE_MAPPING}

form = urllib.parse.urlencode({
    "amount": os.environ["AMOUNT_CENTS"],
    "currency": "usd",
    "metadata[customer]": os.environ["CUSTOMER"],
    "description": os.environ.get("DESCRIPTION", "charge"),
}).encode()
request = urllib.request.Request(
    os.environ["KEYBRAKE_PROXY_URL"].rstrip("/") + "/stripe/v1/payment_intents",
    data=form,
    method="POST",
    headers={
        "authorization": "Bearer " + os.environ["KEYBRAKE_VAULT_KEY"],
        "content-type": "application/x-www-form-urlencoded",
        # Stable across Argo's retries of this step, different in every execution and item.
        "idempotency-key": os.environ["KEYBRAKE_IDEMPOTENCY_KEY"],
    },
)
try:
    with urllib.request.urlopen(request, timeout=60) as response:
        intent = json.loads(response.read())
        print("charged %s %s cents: %s%s" % (os.environ["CUSTOMER"], os.environ["AMOUNT_CENTS"], intent.get("id"),
              " (replayed)" if response.headers.get("Idempotent-Replayed") == "true" else ""))
except urllib.error.HTTPError as error:
    exit_for_refusal(error)
    print("charge of %s failed: HTTP %s; retried" % (os.environ["CUSTOMER"], error.code), file=sys.stderr)
    sys.exit(1)
except (urllib.error.URLError, OSError) as error:
    print("charge of %s failed: %s; retried" % (os.environ["CUSTOMER"], error), file=sys.stderr)
    sys.exit(1)
`;
