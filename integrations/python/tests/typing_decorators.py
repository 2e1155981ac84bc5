"""issue 24 review: the decorators keep their types (checked by mypy --strict, pyproject.toml
[tool.mypy]; not a pytest module). A wrong overload makes an ``assert_type`` fail."""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Dict, Union

from conductor.client.context.task_context import TaskInProgress
from conductor.client.http.models.task import Task
from conductor.client.http.models.task_result import TaskResult
from typing_extensions import assert_type

from keybrake.conductor import KeybrakeTaskContext, keybrake_worker

Result = Union[TaskResult, TaskInProgress]


@keybrake_worker
def charge(task: Task, keybrake: KeybrakeTaskContext) -> Dict[str, Any]:
    return {"key": keybrake.idempotency_key("charge")}


@keybrake_worker(proxy_url="http://keybrake:8080")
def refund(task: Task, keybrake: KeybrakeTaskContext) -> Dict[str, Any]:
    return {}


@keybrake_worker(vault_key_input="key")
async def charge_async(task: Task, keybrake: KeybrakeTaskContext) -> Dict[str, Any]:
    return {}


assert_type(charge, Callable[[Task], Result])
assert_type(refund, Callable[[Task], Result])
assert_type(charge_async, Callable[[Task], Awaitable[Result]])
