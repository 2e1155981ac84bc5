"""A ``conductor-python`` worker decorator, the twin of ``@keybrake/conductor``'s ``keybrakeWorker``:

    from conductor.client.http.models import Task
    from conductor.client.worker.worker_task import worker_task
    from keybrake.conductor import KeybrakeTaskContext, keybrake_worker

    @worker_task(task_definition_name="charge_customer", thread_count=10)
    @keybrake_worker()
    def charge_customer(task: Task, keybrake: KeybrakeTaskContext) -> dict:
        client = stripe.StripeClient(keybrake.vault_key, **stripe_options(keybrake.proxy_url, max_network_retries=0))
        intent = client.v1.payment_intents.create(
            {"amount": task.input_data["amountCents"], "currency": "usd"},
            {"idempotency_key": keybrake.idempotency_key("charge", task.input_data["customerId"])},
        )
        return {"paymentIntentId": intent.id}

- the task gets the vault key from its input (``vaultKey``, removed from ``task.input_data``) and a
  stable ``idempotency_key(...)``: ``workflowInstanceId`` + ``referenceTaskName`` + your parts, the
  same across Conductor's retries of the task (a retry is a new task id), different in every other
  execution and fork branch; byte-identical to the TypeScript worker's;
- every final Keybrake refusal ends the task ``FAILED_WITH_TERMINAL_ERROR`` (never retried,
  whatever the task definition's ``retryCount``) with ``outputData.error.code`` the proxy's code
  (``cap_exhausted``, ``tainted_request_refused``...), as do a missing vault key
  (``missing_vault_key``) and the SDK's ``NonRetryableException`` (``non_retryable``); every other
  failure stays a retryable ``FAILED``;
- the vault key never reaches the task's output, logs or failure reason (Conductor stores them and
  shows them in its UI).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Union

from conductor.client.http.models.task import Task
from conductor.client.http.models.task_exec_log import TaskExecLog
from conductor.client.http.models.task_result import TaskResult
from conductor.client.http.models.task_result_status import TaskResultStatus
from conductor.client.worker.exception import NonRetryableException

from ._redact import VAULT_KEY_REDACTED, redact_vault_key, redact_vault_key_text
from .idempotency import Part, derive_idempotency_key
from .refusal import keybrake_refusal

__all__ = [
    "KeybrakeTaskContext",
    "KeybrakeRetryableError",
    "keybrake_worker",
    "terminal_failure",
    "VAULT_KEY_REDACTED",
]


@dataclass(frozen=True)
class KeybrakeTaskContext:
    """What a wrapped worker gets besides the task."""

    #: This workflow execution's vault key: use it as the vendor SDK's secret.
    vault_key: str
    #: The proxy's base URL, for the SDK helpers (``stripe_options(proxy_url)``...).
    proxy_url: str
    workflow_instance_id: str
    reference_task_name: str

    def idempotency_key(self, *parts: Part) -> str:
        """A stable idempotency key for this task and your parts, e.g. ``idempotency_key("charge", customer_id)``."""
        return derive_idempotency_key(["conductor", self.workflow_instance_id, self.reference_task_name, *parts])


class KeybrakeRetryableError(Exception):
    """What a wrapped worker's failure becomes (its message with the vault key redacted): the
    task is ``FAILED`` and retried by its definition's policy."""


def terminal_failure(code: str, message: str) -> TaskResult:
    """A result that ends the task ``FAILED_WITH_TERMINAL_ERROR`` with a stable code (a later
    SWITCH can tell a cap hit from other failures by ``outputData.error.code``)."""
    result = TaskResult(
        status=TaskResultStatus.FAILED_WITH_TERMINAL_ERROR,
        reason_for_incompletion=message,
        output_data={"error": {"code": code, "message": message}},
    )
    result.logs = [TaskExecLog(log=f"{code}: {message}", created_time=int(time.time() * 1000))]
    return result


WorkerFunction = Callable[[Task, KeybrakeTaskContext], Union[Dict[str, Any], TaskResult, None]]


def keybrake_worker(
    function: Optional[WorkerFunction] = None,
    *,
    proxy_url: Optional[str] = None,
    vault_key_input: str = "vaultKey",
) -> Any:
    """Wraps ``function(task, keybrake)`` into a conductor-python worker function ``(task) ->
    TaskResult``. Use it under ``@worker_task(...)`` or pass it as ``Worker(execute_function=...)``.

    :param proxy_url: the proxy's base URL as the worker reaches it (default: ``KEYBRAKE_PROXY_URL``).
    :param vault_key_input: the task input parameter that carries the vault key.
    """

    def wrap(inner: WorkerFunction) -> Callable[[Task], TaskResult]:
        resolved_proxy_url = proxy_url or os.environ.get("KEYBRAKE_PROXY_URL")
        if not resolved_proxy_url:
            raise ValueError(f"keybrake_worker({inner.__name__}): pass proxy_url or set KEYBRAKE_PROXY_URL")

        # Annotated (task: Task) -> TaskResult: conductor-python then hands over the whole task.
        # Not functools.wraps: inspect.signature would follow __wrapped__ to the two-argument function.
        def execute(task: Task) -> TaskResult:
            input_data = dict(task.input_data or {})
            vault_key = input_data.pop(vault_key_input, None)
            if not isinstance(vault_key, str) or vault_key == "":
                # The workflow is wired wrong: retrying will not fix it.
                return terminal_failure(
                    "missing_vault_key",
                    f'Task input "{vault_key_input}" holds no Keybrake vault key: pass it the issue_vault_key '
                    "task's response.body.vault_key.",
                )
            task.input_data = input_data
            context = KeybrakeTaskContext(
                vault_key=vault_key,
                proxy_url=resolved_proxy_url,
                workflow_instance_id=task.workflow_instance_id or "",
                reference_task_name=task.reference_task_name or "",
            )
            try:
                output = inner(task, context)
            except NonRetryableException as error:
                return terminal_failure("non_retryable", redact_vault_key_text(str(error), vault_key))
            except Exception as error:  # noqa: BLE001 - every failure is mapped
                message = redact_vault_key_text(str(error), vault_key)
                refusal = keybrake_refusal(error)
                if refusal == "cap_exhausted":
                    return terminal_failure("cap_exhausted", f"Keybrake cap exhausted: {message}")
                if refusal is not None:
                    return terminal_failure(refusal, f"Keybrake refused the call ({refusal}): {message}")
                # The SDK logs and stores what is raised: only the type's name and the redacted
                # message go on (a vendor SDK error's bodies and headers stay here).
                raise KeybrakeRetryableError(f"{type(error).__name__}: {message}") from None
            if isinstance(output, TaskResult):
                output.output_data = redact_vault_key(output.output_data, vault_key)
                if output.reason_for_incompletion:
                    output.reason_for_incompletion = redact_vault_key_text(output.reason_for_incompletion, vault_key)
                for entry in output.logs or []:
                    entry.log = redact_vault_key_text(entry.log or "", vault_key)
                return output
            result = TaskResult(status=TaskResultStatus.COMPLETED, output_data=redact_vault_key(output, vault_key))
            return result

        # Real classes, not the strings `from __future__ import annotations` leaves.
        execute.__annotations__ = {"task": Task, "return": TaskResult}
        execute.__name__ = inner.__name__
        execute.__qualname__ = inner.__qualname__
        execute.__doc__ = inner.__doc__
        execute.__module__ = inner.__module__
        return execute

    return wrap(function) if function is not None else wrap
