"""``temporalio`` integration, the twin of ``@keybrake/temporal`` (and interoperable with it: the
same activity names, header and sealed-key format, so a Python worker can run activities of a
TypeScript workflow and the other way round).

Worker::

    client = KeybrakeClient(proxy_url, issuer_key)
    # or, with workload identity (issue 25): the worker pod's projected token, re-read when rotated
    client = KeybrakeClient(proxy_url, token_provider=TokenFile("/var/run/secrets/keybrake/token"))
    worker = Worker(
        temporal_client, task_queue="billing",
        workflows=[BillingWorkflow],
        activities=[*keybrake_activities(client, seal_secret=SEAL), charge_customer],
        interceptors=[KeybrakeInterceptor(proxy_url=proxy_url, seal_secret=SEAL)],
        activity_executor=ThreadPoolExecutor(10),
    )

Workflow::

    async def run(self, customers):
        return await with_vault_key({"vendor": "stripe", "usd_cap": 300, "allowed_endpoints": [...]},
                                    lambda key: self.charge_all(customers))

Activity::

    @activity.defn
    def charge_customer(customer):
        kb = keybrake()
        client = stripe.StripeClient(kb.vault_key, **stripe_options(kb.proxy_url, max_network_retries=0))
        client.v1.payment_intents.create({...}, {"idempotency_key": kb.idempotency_key("charge", customer["customerId"])})

- ``with_vault_key`` issues a key for the execution (an activity: only the key id and the sealed key
  enter history), attaches it to every activity the body schedules (a workflow outbound
  interceptor, as a header), and revokes it when the body ends, on success or failure;
- each such activity gets ``keybrake()``: the unsealed vault key, the proxy URL, and a stable
  idempotency key from ``workflow_id`` + ``activity_id`` (the same across Temporal's retries of the
  activity) plus your parts, byte-identical to the TypeScript one;
- a cap hit becomes a non-retryable ``ApplicationError`` of type ``KeybrakeCapExhausted``; the other
  final refusals ``Keybrake`` + their code in PascalCase (``KeybrakeTaintedRequestRefused``...); a
  vendor's own 429 with ``Retry-After`` a retryable ``KeybrakeVendorRateLimited`` with
  ``next_retry_delay``; a refusal by a request or concurrency limit of the key (issue 26) a
  retryable ``KeybrakeRateLimited`` / ``KeybrakeConcurrencyLimited`` with ``next_retry_delay`` the
  proxy's ``Retry-After``; anything else is left to Temporal's retry policy.
"""

from __future__ import annotations

import base64
import contextvars
import hashlib
import os
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Awaitable, Callable, Dict, List, Optional, Type, TypeVar

import temporalio.activity
import temporalio.converter
import temporalio.workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
    StartActivityInput,
    StartLocalActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

from .client import KeybrakeClient
from .idempotency import Part, derive_idempotency_key
from .refusal import _headers_of, _status_of, header_value, keybrake_refusal, limit_refusal, retry_after_ms

#: Activity header that carries the execution's vault key (sealed unless sealing is off).
VAULT_KEY_HEADER = "keybrake-vault-key"
#: ``ApplicationError`` type of a cap hit: terminal, never retried.
CAP_EXHAUSTED_FAILURE = "KeybrakeCapExhausted"
TAINTED_REQUEST_REFUSED_FAILURE = "KeybrakeTaintedRequestRefused"
#: ``ApplicationError`` type of a vendor's own 429: retried after the vendor's ``Retry-After``.
VENDOR_RATE_LIMITED_FAILURE = "KeybrakeVendorRateLimited"
#: Issue 26: ``ApplicationError`` types of a call refused by a request or concurrency limit of the
#: key: retryable, with ``next_retry_delay`` the proxy's ``Retry-After`` (as ``@keybrake/temporal``).
RATE_LIMITED_FAILURE = "KeybrakeRateLimited"
CONCURRENCY_LIMITED_FAILURE = "KeybrakeConcurrencyLimited"
ISSUE_ACTIVITY = "keybrakeIssueVaultKey"
REVOKE_ACTIVITY = "keybrakeRevokeVaultKey"
_SEAL_PREFIX = "kbs1"
_STATE_ATTRIBUTE = "_keybrake_vault_key_ref"

T = TypeVar("T")


def refusal_failure_type(code: str) -> str:
    """``Keybrake`` + the error code in PascalCase: ``cap_exhausted`` -> ``KeybrakeCapExhausted``."""
    return "Keybrake" + "".join(word[:1].upper() + word[1:] for word in code.split("_"))


# --- sealing (AES-256-GCM, the TypeScript format: kbs1.<iv>.<ciphertext>.<tag>, base64url) ------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def seal_vault_key(vault_key: str, secret: str) -> str:
    """Seals a vault key under a secret only the workers hold, so workflow history sees only ciphertext."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    iv = os.urandom(12)
    sealed = AESGCM(hashlib.sha256(secret.encode()).digest()).encrypt(iv, vault_key.encode(), None)
    return ".".join([_SEAL_PREFIX, _b64(iv), _b64(sealed[:-16]), _b64(sealed[-16:])])


def unseal_vault_key(sealed: str, secret: str) -> str:
    """Opens a sealed vault key; raises if it was sealed under another secret or tampered with."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    parts = sealed.split(".")
    if len(parts) != 4 or parts[0] != _SEAL_PREFIX or not all(parts[1:]):
        raise ValueError("not a sealed Keybrake vault key")
    _, iv, body, tag = parts
    key = hashlib.sha256(secret.encode()).digest()
    return AESGCM(key).decrypt(_unb64(iv), _unb64(body) + _unb64(tag), None).decode()


# --- activities: issue and revoke ----------------------------------------------------------------


def keybrake_activities(client: KeybrakeClient, *, seal_secret: Optional[str] = None) -> List[Callable[..., Any]]:
    """The issue and revoke activities ``with_vault_key`` calls; register them beside your own.

    Pass the same ``seal_secret`` as :class:`KeybrakeInterceptor`'s. Without one (``None``) the
    vault key enters workflow history unsealed, readable by anyone who can read history: only for
    tests."""

    @temporalio.activity.defn(name=ISSUE_ACTIVITY)
    def issue_vault_key(issue: Dict[str, Any]) -> Dict[str, Any]:
        issued = client.issue_vault_key(**issue)
        sealed = seal_secret is not None
        return {
            "keyId": issued["key_id"],
            "vaultKey": seal_vault_key(issued["vault_key"], seal_secret) if seal_secret is not None else issued["vault_key"],
            "sealed": sealed,
            "expiresAt": issued["expires_at"],
            "tainted": bool(issued.get("tainted")),
        }

    @temporalio.activity.defn(name=REVOKE_ACTIVITY)
    def revoke_vault_key(key_id: str) -> None:
        client.revoke_vault_key(key_id)

    return [issue_vault_key, revoke_vault_key]


# --- workflow side ---------------------------------------------------------------------------------


async def with_vault_key(issue: Dict[str, Any], body: Callable[[str], Awaitable[T]]) -> T:
    """Runs a workflow body under a vault key issued for this execution (``issue`` is the proxy's
    ``POST /vault/keys`` body; ``expires_in`` defaults to 2h, ``agent_run_label`` to
    ``temporal/<workflow id>``), and revokes the key when the body ends. ``body`` gets the key id."""
    info = temporalio.workflow.info()
    request = {"expires_in": "2h", "agent_run_label": f"temporal/{info.workflow_id}", **issue}
    options: Dict[str, Any] = {"start_to_close_timeout": timedelta(seconds=30), "retry_policy": RetryPolicy(maximum_attempts=5)}
    ref = await temporalio.workflow.execute_activity(ISSUE_ACTIVITY, request, **options)
    instance = temporalio.workflow.instance()
    setattr(instance, _STATE_ATTRIBUTE, ref)
    try:
        return await body(str(ref["keyId"]))
    finally:
        setattr(instance, _STATE_ATTRIBUTE, None)
        # Revoke even when the body failed.
        await temporalio.workflow.execute_activity(REVOKE_ACTIVITY, ref["keyId"], **options)


class _WorkflowOutbound(WorkflowOutboundInterceptor):
    def _with_header(self, input: Any) -> Any:
        ref = getattr(temporalio.workflow.instance(), _STATE_ATTRIBUTE, None)
        if ref is not None:
            payload = temporalio.converter.default().payload_converter.to_payloads([ref])[0]
            input.headers = {**input.headers, VAULT_KEY_HEADER: payload}
        return input

    def start_activity(self, input: StartActivityInput) -> temporalio.workflow.ActivityHandle[Any]:
        return super().start_activity(self._with_header(input))

    def start_local_activity(self, input: StartLocalActivityInput) -> temporalio.workflow.ActivityHandle[Any]:
        return super().start_local_activity(self._with_header(input))


class _WorkflowInbound(WorkflowInboundInterceptor):
    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_WorkflowOutbound(outbound))


# --- activity side ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeybrakeActivityContext:
    """What an activity running under a Keybrake vault key can use."""

    #: The execution's vault key, unsealed: use it as the vendor SDK's secret. Not in ``repr``.
    vault_key: str = field(repr=False)
    key_id: str
    #: The proxy's base URL, for the SDK helpers.
    proxy_url: str
    workflow_id: str
    activity_id: str

    def idempotency_key(self, *parts: Part) -> str:
        """Stable across Temporal's retries of this activity: ``workflow_id`` + ``activity_id`` + your parts."""
        return derive_idempotency_key([self.workflow_id, self.activity_id, *parts])


_context: contextvars.ContextVar[Optional[KeybrakeActivityContext]] = contextvars.ContextVar("keybrake_activity", default=None)


def keybrake() -> KeybrakeActivityContext:
    """The Keybrake context of the running activity; raises outside an activity scheduled inside
    ``with_vault_key`` on a worker with :class:`KeybrakeInterceptor`. A context variable: it
    reaches ``async def`` activities and sync ones on a ``ThreadPoolExecutor`` (temporalio copies
    the context into the thread), not activities run in another process."""
    context = _context.get()
    if context is None:
        raise RuntimeError(
            "No Keybrake vault key: run the workflow body inside with_vault_key() and install KeybrakeInterceptor on the worker."
        )
    return context


def to_temporal_failure(error: BaseException) -> BaseException:
    """Maps what a vendor call raised to what Temporal should do with it (see the module's doc)."""
    if isinstance(error, ApplicationError):
        return error
    refusal = keybrake_refusal(error)
    if refusal is not None:
        failure = ApplicationError(
            f"Keybrake refused the call ({refusal}): {error}", type=refusal_failure_type(refusal), non_retryable=True
        )
        return failure
    limit = limit_refusal(error)
    if limit is not None:
        delay_ms = retry_after_ms(error) or 1000
        return ApplicationError(
            f"Keybrake limit ({limit}): retry after {delay_ms / 1000:g} s",
            type=RATE_LIMITED_FAILURE if limit == "rate_limited" else CONCURRENCY_LIMITED_FAILURE,
            next_retry_delay=timedelta(milliseconds=delay_ms),
        )
    if _status_of(error) == 429:
        retry_after = header_value(_headers_of(error), "retry-after")
        try:
            seconds = float(retry_after) if retry_after is not None else None
        except ValueError:
            seconds = None
        if seconds is not None and seconds >= 0:
            return ApplicationError(
                f"Vendor rate limit: retry after {seconds:g} s",
                type=VENDOR_RATE_LIMITED_FAILURE,
                next_retry_delay=timedelta(seconds=seconds),
            )
    return error


class _ActivityInbound(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, proxy_url: str, seal_secret: Optional[str]) -> None:
        super().__init__(next)
        self._proxy_url = proxy_url
        self._seal_secret = seal_secret

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        header = input.headers.get(VAULT_KEY_HEADER)
        if header is None:
            return await super().execute_activity(input)
        ref = temporalio.converter.default().payload_converter.from_payloads([header], [dict])[0]
        vault_key = str(ref["vaultKey"])
        if ref.get("sealed"):
            if not self._seal_secret:
                raise RuntimeError("A sealed vault key arrived but the worker has no seal_secret.")
            vault_key = unseal_vault_key(vault_key, self._seal_secret)
        info = temporalio.activity.info()
        token = _context.set(
            KeybrakeActivityContext(
                vault_key=vault_key,
                key_id=str(ref["keyId"]),
                proxy_url=self._proxy_url,
                workflow_id=info.workflow_id or info.workflow_type or "",
                activity_id=info.activity_id,
            )
        )
        try:
            return await super().execute_activity(input)
        except Exception as error:
            mapped = to_temporal_failure(error)
            if mapped is error:
                raise
            raise mapped from None
        finally:
            _context.reset(token)


class KeybrakeInterceptor(Interceptor):
    """The worker interceptor: attaches the execution's key to activities (workflow side) and gives
    activities their Keybrake context and failure mapping (activity side)."""

    def __init__(self, *, proxy_url: str, seal_secret: Optional[str] = None) -> None:
        self._proxy_url = proxy_url
        self._seal_secret = seal_secret

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ActivityInbound(next, self._proxy_url, self._seal_secret)

    def workflow_interceptor_class(self, input: WorkflowInterceptorClassInput) -> Optional[Type[WorkflowInboundInterceptor]]:
        return _WorkflowInbound
