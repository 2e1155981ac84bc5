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
- a call refused by a request or concurrency limit of the key (issue 26: ``rate_limited``,
  ``concurrency_limited``; transient) ends the attempt ``IN_PROGRESS`` with
  ``callback_after_seconds`` the proxy's ``Retry-After``: Conductor polls the same task again once
  that has passed (same idempotency key; no ``retryCount`` used up), as the TypeScript worker does;
- ``async def`` functions are awaited (the wrapped worker is then ``async`` too, and
  conductor-python runs it on its asyncio runner); a returned ``TaskInProgress`` passes through;
  other outputs are normalised as conductor-python's ``Worker.execute`` does (a dataclass becomes a
  dict, anything else not a dict ``{"result": ...}``) before the key is redacted;
- the vault key never reaches the task's output, logs (those of ``get_task_context().add_log``
  included) or failure reason (Conductor stores them and shows them in its UI);
- ``KEYBRAKE_PROXY_URL`` is read when the first task runs, not at import.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import threading
import time
from typing import Any, Awaitable, Callable, Coroutine, Dict, Optional, TypeVar, Union, overload

from conductor.client.context.task_context import TaskInProgress, get_task_context
from conductor.client.http.models.task import Task
from conductor.client.http.models.task_exec_log import TaskExecLog
from conductor.client.http.models.task_result import TaskResult
from conductor.client.http.models.task_result_status import TaskResultStatus
from conductor.client.worker.exception import NonRetryableException

from ._redact import VAULT_KEY_REDACTED, redact_vault_key, redact_vault_key_text
from .idempotency import Part, derive_idempotency_key
from .refusal import keybrake_refusal, limit_refusal, retry_after_ms

__all__ = [
    "KeybrakeTaskContext",
    "KeybrakeRetryableError",
    "keybrake_worker",
    "terminal_failure",
    "limit_retry",
    "VAULT_KEY_REDACTED",
]


@dataclasses.dataclass(frozen=True)
class KeybrakeTaskContext:
    """What a wrapped worker gets besides the task."""

    #: This workflow execution's vault key: use it as the vendor SDK's secret. Not in ``repr``.
    vault_key: str = dataclasses.field(repr=False)
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


def limit_retry(code: str, retry_after_s: int, message: str) -> TaskResult:
    """Issue 26: a result that hands a limit-refused task back to Conductor to run again after
    ``retry_after_s``: ``IN_PROGRESS`` with ``callback_after_seconds`` (a ``FAILED`` task's retry
    would wait only its definition's fixed ``retryDelaySeconds`` and use up one of its
    ``retryCount``). The twin of the TypeScript worker's ``limitRetry``."""
    result = TaskResult(
        status=TaskResultStatus.IN_PROGRESS,
        callback_after_seconds=retry_after_s,
        output_data={"error": {"code": code, "message": message, "retry_after_s": retry_after_s}},
    )
    result.logs = [TaskExecLog(log=f"{code}: retrying after {retry_after_s} s", created_time=int(time.time() * 1000))]
    return result


#: A wrapped function returns a ``TaskResult``, a ``TaskInProgress`` or output data (a dict, a
#: dataclass, anything conductor-python serialises).
#: (A TypeVar, not ``object``: a coroutine's ``Any`` type arguments would make mypy's overload
#: match ambiguous.)
_Output = TypeVar("_Output")
SyncWorkerFunction = Callable[[Task, KeybrakeTaskContext], _Output]
AsyncWorkerFunction = Callable[[Task, KeybrakeTaskContext], Coroutine[Any, Any, _Output]]
#: What the decorator returns: a conductor-python worker function taking the whole task.
SyncExecute = Callable[[Task], Union[TaskResult, TaskInProgress]]
AsyncExecute = Callable[[Task], Awaitable[Union[TaskResult, TaskInProgress]]]

_api_client: Any = None
_api_client_lock = threading.Lock()


def _serializer() -> Any:
    """conductor-python's ApiClient, whose ``sanitize_for_serialization`` ``Worker.execute`` uses."""
    global _api_client
    with _api_client_lock:
        if _api_client is None:
            from conductor.client.http.api_client import ApiClient

            _api_client = ApiClient()
        return _api_client


def _normalise_output(output: Any) -> Dict[str, Any]:
    """Output data as conductor-python's ``Worker.execute`` makes it: a dataclass as a dict,
    anything else serialised and, if not a dict, wrapped ``{"result": ...}``."""
    if dataclasses.is_dataclass(output) and not isinstance(output, type):
        return dataclasses.asdict(output)
    try:
        data = _serializer().sanitize_for_serialization(output)
    except (RecursionError, TypeError, AttributeError):
        return {
            "result": str(output),
            "type": type(output).__name__,
            "error": "Object could not be serialized. Please return JSON-serializable data.",
        }
    return data if isinstance(data, dict) else {"result": data}


def _redact_logs(logs: Any, vault_key: str) -> None:
    for entry in logs or []:
        entry.log = redact_vault_key_text(entry.log or "", vault_key)


def _redact_task_context(vault_key: str) -> None:
    """Redacts what the task put in conductor-python's task context (``get_task_context()``:
    ``add_log(...)``, ``set_output(...)``), which the SDK merges into the result after the worker
    returns (the twin of the TypeScript worker's ``redactTaskContext``)."""
    try:
        context = get_task_context()
    except RuntimeError:  # called outside a task runner (Worker.execute directly, a test)
        return
    result = context.task_result
    _redact_logs(getattr(result, "logs", None), vault_key)
    if getattr(result, "output_data", None) is not None:
        result.output_data = redact_vault_key(result.output_data, vault_key)


class _Prepared:
    """A task with its vault key taken out of the input, or the terminal failure that it lacks one."""

    def __init__(self, task: Task, context: Optional[KeybrakeTaskContext], failure: Optional[TaskResult]) -> None:
        self.task = task
        self.context = context
        self.failure = failure


def _current_task(task: Any) -> Task:
    # conductor-python's asyncio runner passes an async worker its arguments by name from the
    # task's input (so not the task itself): the task is then in the task context.
    try:
        return get_task_context().task
    except RuntimeError:
        return task  # type: ignore[no-any-return]


def _stamp(result: TaskResult, task: Task) -> TaskResult:
    # The asyncio runner sends a returned TaskResult as is: it must name its task.
    result.task_id = task.task_id
    result.workflow_instance_id = task.workflow_instance_id
    return result


def _map_failure(error: Exception, vault_key: str) -> TaskResult:
    """A terminal result for a final Keybrake refusal or a NonRetryableException, an ``IN_PROGRESS``
    one for a limit refusal; raises a
    redacted :class:`KeybrakeRetryableError` for everything else."""
    message = redact_vault_key_text(str(error), vault_key)
    if isinstance(error, NonRetryableException):
        return terminal_failure("non_retryable", message)
    refusal = keybrake_refusal(error)
    if refusal == "cap_exhausted":
        return terminal_failure("cap_exhausted", f"Keybrake cap exhausted: {message}")
    if refusal is not None:
        return terminal_failure(refusal, f"Keybrake refused the call ({refusal}): {message}")
    limit = limit_refusal(error)
    if limit is not None:
        seconds = max(1, -(-(retry_after_ms(error) or 1000) // 1000))
        return limit_retry(limit, seconds, f"Keybrake limit ({limit}): {message}")
    # The SDK logs and stores what is raised: only the type's name and the redacted message go
    # on (a vendor SDK error's bodies and headers stay here).
    raise KeybrakeRetryableError(f"{type(error).__name__}: {message}") from None


def _finish(output: Any, vault_key: str) -> Union[TaskResult, TaskInProgress]:
    """The wrapped function's output, redacted, as conductor-python would send it."""
    if isinstance(output, TaskResult):
        if output.output_data is not None:
            output.output_data = redact_vault_key(_normalise_output(output.output_data), vault_key)
        if output.reason_for_incompletion:
            output.reason_for_incompletion = redact_vault_key_text(output.reason_for_incompletion, vault_key)
        _redact_logs(output.logs, vault_key)
        return output
    if isinstance(output, TaskInProgress):
        output.output = redact_vault_key(_normalise_output(output.output), vault_key)
        return output
    return TaskResult(status=TaskResultStatus.COMPLETED, output_data=redact_vault_key(_normalise_output(output), vault_key))


# An async function also matches the sync overload (its result is an object): the first wins.
@overload
def keybrake_worker(  # type: ignore[overload-overlap]
    function: AsyncWorkerFunction[_Output], *, proxy_url: Optional[str] = ..., vault_key_input: str = ...
) -> AsyncExecute: ...
@overload
def keybrake_worker(function: SyncWorkerFunction[_Output], *, proxy_url: Optional[str] = ..., vault_key_input: str = ...) -> SyncExecute: ...
@overload
def keybrake_worker(
    function: None = ..., *, proxy_url: Optional[str] = ..., vault_key_input: str = ...
) -> _Decorator: ...
def keybrake_worker(
    function: Optional[Callable[[Task, KeybrakeTaskContext], Any]] = None,
    *,
    proxy_url: Optional[str] = None,
    vault_key_input: str = "vaultKey",
) -> Any:
    """Wraps ``function(task, keybrake)`` (plain or ``async def``) into a conductor-python worker
    function ``(task) -> TaskResult`` (``async`` for an ``async def``). Use it under
    ``@worker_task(...)`` or pass it as ``Worker(execute_function=...)``.

    :param proxy_url: the proxy's base URL as the worker reaches it (default: ``KEYBRAKE_PROXY_URL``,
        read when the first task runs).
    :param vault_key_input: the task input parameter that carries the vault key.
    """
    decorator = _Decorator(proxy_url, vault_key_input)
    return decorator(function) if function is not None else decorator


class _Decorator:
    """``keybrake_worker(proxy_url=...)`` without a function: applies to the function it decorates."""

    def __init__(self, proxy_url: Optional[str], vault_key_input: str) -> None:
        self._proxy_url = proxy_url
        self._vault_key_input = vault_key_input

    @overload
    def __call__(self, inner: AsyncWorkerFunction[_Output]) -> AsyncExecute: ...  # type: ignore[overload-overlap]
    @overload
    def __call__(self, inner: SyncWorkerFunction[_Output]) -> SyncExecute: ...
    def __call__(self, inner: Callable[[Task, KeybrakeTaskContext], Any]) -> Any:
        name = getattr(inner, "__name__", "worker")
        vault_key_input = self._vault_key_input
        configured_proxy_url = self._proxy_url

        def prepare(task: Task) -> _Prepared:
            resolved_proxy_url = configured_proxy_url or os.environ.get("KEYBRAKE_PROXY_URL")
            if not resolved_proxy_url:
                # This worker is deployed wrong, not the task: FAILED, retryable (a worker that is
                # configured right can take the retry).
                raise ValueError(f"keybrake_worker({name}): pass proxy_url or set KEYBRAKE_PROXY_URL")
            input_data = dict(task.input_data or {})
            vault_key = input_data.pop(vault_key_input, None)
            if not isinstance(vault_key, str) or vault_key == "":
                # The workflow is wired wrong: retrying will not fix it.
                return _Prepared(
                    task,
                    None,
                    terminal_failure(
                        "missing_vault_key",
                        f'Task input "{vault_key_input}" holds no Keybrake vault key: pass it the issue_vault_key '
                        "task's response.body.vault_key.",
                    ),
                )
            task.input_data = input_data
            context = KeybrakeTaskContext(
                vault_key=vault_key,
                proxy_url=resolved_proxy_url,
                workflow_instance_id=task.workflow_instance_id or "",
                reference_task_name=task.reference_task_name or "",
            )
            return _Prepared(task, context, None)

        def settle(prepared: _Prepared, run: Callable[[], Any]) -> Union[TaskResult, TaskInProgress]:
            assert prepared.context is not None
            vault_key = prepared.context.vault_key
            try:
                try:
                    output = run()
                except Exception as error:  # noqa: BLE001 - every failure is mapped
                    return _stamp(_map_failure(error, vault_key), prepared.task)
                finished = _finish(output, vault_key)
                return _stamp(finished, prepared.task) if isinstance(finished, TaskResult) else finished
            finally:
                _redact_task_context(vault_key)

        execute: Callable[..., Any]
        if inspect.iscoroutinefunction(inner) or inspect.iscoroutinefunction(getattr(type(inner), "__call__", None)):

            async def execute_async(task: Task) -> Union[TaskResult, TaskInProgress]:
                prepared = prepare(_current_task(task))
                if prepared.context is None:
                    assert prepared.failure is not None
                    return _stamp(prepared.failure, prepared.task)
                context = prepared.context
                try:
                    output = await inner(prepared.task, context)
                except Exception as error:  # noqa: BLE001 - mapped in settle
                    failure = error

                    def rethrow() -> Any:
                        raise failure

                    return settle(prepared, rethrow)
                return settle(prepared, lambda: output)

            execute = execute_async
        else:

            def execute_sync(task: Task) -> Union[TaskResult, TaskInProgress]:
                prepared = prepare(task)
                if prepared.context is None:
                    assert prepared.failure is not None
                    return _stamp(prepared.failure, prepared.task)
                context = prepared.context
                return settle(prepared, lambda: inner(prepared.task, context))

            execute = execute_sync

        # Annotated (task: Task) -> TaskResult: conductor-python then hands over the whole task.
        # Not functools.wraps: inspect.signature would follow __wrapped__ to the two-argument function.
        execute.__annotations__ = {"task": Task, "return": TaskResult}
        execute.__name__ = name
        execute.__qualname__ = getattr(inner, "__qualname__", name)
        execute.__doc__ = inner.__doc__
        execute.__module__ = inner.__module__
        return execute
