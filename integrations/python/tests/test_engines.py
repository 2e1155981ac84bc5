"""issue 24: the Conductor decorator and the Temporal interceptor's pieces, on the engines' own
SDK objects (conductor-python's Worker.execute, temporalio's ApplicationError). On the real
engines: e2e/conductor and e2e/temporal (Python workers)."""

from __future__ import annotations

import pytest
from conductor.client.http.models.task import Task
from conductor.client.worker.worker import Worker
from temporalio.exceptions import ApplicationError

from keybrake import CapExhaustedError, KeybrakeApiError, derive_idempotency_key
from keybrake.conductor import VAULT_KEY_REDACTED, KeybrakeTaskContext, keybrake_worker
from keybrake.temporal import refusal_failure_type, seal_vault_key, to_temporal_failure, unseal_vault_key

VAULT_KEY = "kb_live_vault_key_for_tests_0123456789"


def run(function, input_data=None) -> object:
    worker = Worker("charge", keybrake_worker(function, proxy_url="http://keybrake:8080"))
    task = Task(
        task_id="t-1",
        workflow_instance_id="wf-1",
        reference_task_name="charge__3",
        input_data={"vaultKey": VAULT_KEY, "customerId": "cus_3"} if input_data is None else input_data,
    )
    return worker.execute(task)


def test_conductor_task_gets_the_key_and_a_stable_idempotency_key_and_the_key_never_leaves() -> None:
    seen = {}

    def charge(task: Task, keybrake: KeybrakeTaskContext) -> dict:
        seen["input"] = dict(task.input_data)
        seen["key"] = keybrake.idempotency_key("charge", task.input_data["customerId"])
        return {"echo": f"Bearer {keybrake.vault_key}"}

    result = run(charge)
    assert result.status == "COMPLETED"
    assert seen["input"] == {"customerId": "cus_3"}  # the vault key is not in the task input
    assert seen["key"] == derive_idempotency_key(["conductor", "wf-1", "charge__3", "charge", "cus_3"])
    assert result.output_data == {"echo": f"Bearer {VAULT_KEY_REDACTED}"}


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (CapExhaustedError(), "cap_exhausted"),
        (KeybrakeApiError(403, "tainted_request_refused", "tainted"), "tainted_request_refused"),
        (KeybrakeApiError(401, "vault_key_revoked", "revoked"), "vault_key_revoked"),
    ],
)
def test_conductor_final_refusals_end_the_task_failed_with_terminal_error(error: Exception, code: str) -> None:
    def charge(task: Task, keybrake: KeybrakeTaskContext) -> dict:
        raise error

    result = run(charge)
    assert result.status == "FAILED_WITH_TERMINAL_ERROR"
    assert result.output_data["error"]["code"] == code


def test_conductor_other_failures_stay_retryable_and_are_redacted() -> None:
    def charge(task: Task, keybrake: KeybrakeTaskContext) -> dict:
        raise ConnectionError(f"reset while sending with {keybrake.vault_key}")

    result = run(charge)
    assert result.status == "FAILED"
    assert VAULT_KEY not in (result.reason_for_incompletion or "")
    assert VAULT_KEY_REDACTED in (result.reason_for_incompletion or "")
    assert all(VAULT_KEY not in (entry.log or "") for entry in result.logs or [])


def test_conductor_missing_vault_key_is_terminal() -> None:
    result = run(lambda task, keybrake: {}, {"customerId": "cus_3"})
    assert result.status == "FAILED_WITH_TERMINAL_ERROR"
    assert result.output_data["error"]["code"] == "missing_vault_key"


def test_temporal_cap_hit_becomes_a_non_retryable_keybrake_cap_exhausted() -> None:
    failure = to_temporal_failure(CapExhaustedError())
    assert isinstance(failure, ApplicationError)
    assert failure.type == "KeybrakeCapExhausted" and failure.non_retryable
    tainted = to_temporal_failure(KeybrakeApiError(403, "tainted_request_refused", "m"))
    assert isinstance(tainted, ApplicationError) and tainted.type == "KeybrakeTaintedRequestRefused" and tainted.non_retryable
    other = ValueError("x")
    assert to_temporal_failure(other) is other
    assert refusal_failure_type("vault_key_expired") == "KeybrakeVaultKeyExpired"


def test_temporal_sealed_keys_interoperate_with_the_typescript_seal() -> None:
    # Sealed by @keybrake/temporal's sealVaultKey('kb_vault_example_key', 'seal-secret-example').
    from_typescript = "kbs1.xOdKjHE08b5_09fO.ewU1R6VEQ24EPTOruszwfmAtuTQ.WX-UljnetfbRuYp1buv41w"
    assert unseal_vault_key(from_typescript, "seal-secret-example") == "kb_vault_example_key"
    sealed = seal_vault_key(VAULT_KEY, "s")
    assert VAULT_KEY not in sealed and unseal_vault_key(sealed, "s") == VAULT_KEY
    with pytest.raises(Exception):
        unseal_vault_key(sealed, "another secret")
