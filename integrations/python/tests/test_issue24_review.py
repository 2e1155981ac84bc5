"""issue 24 review findings: the Conductor decorator on conductor-python's own task runners
(TaskRunner and AsyncTaskRunner, which set the task context and merge its logs), the contexts'
repr, and is_cap_hit without the proxy's header. Each test fails with its fix reverted."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import sys
from typing import Any, Dict, List

import pytest
from conductor.client.automator.async_task_runner import AsyncTaskRunner
from conductor.client.automator.task_runner import TaskRunner
from conductor.client.configuration.configuration import Configuration
from conductor.client.context.task_context import TaskInProgress, get_task_context
from conductor.client.http.models.task import Task
from conductor.client.http.models.task_result import TaskResult
from conductor.client.worker.worker import Worker

from keybrake import CapExhaustedError
from keybrake.conductor import VAULT_KEY_REDACTED, KeybrakeTaskContext, keybrake_worker
from keybrake.temporal import KeybrakeActivityContext

VAULT_KEY = "kb_live_vault_key_for_tests_0123456789"
# No server: the runners' execute step never reaches it (only polling and updating would).
CONFIGURATION = Configuration(server_api_url="http://127.0.0.1:9/api")


def a_task(task_id: str = "t-1") -> Task:
    return Task(
        task_id=task_id,
        workflow_instance_id="wf-1",
        reference_task_name="charge__3",
        input_data={"vaultKey": VAULT_KEY, "customerId": "cus_3"},
    )


def run_sync(function: Any, **options: Any) -> TaskResult:
    """Executes one task the way conductor-python's TaskRunner does (task context, log merge)."""
    runner = TaskRunner(Worker("charge", keybrake_worker(function, proxy_url="http://keybrake:8080", **options)), CONFIGURATION)
    result: TaskResult = runner._TaskRunner__execute_task(a_task())  # type: ignore[attr-defined]
    return result


def run_async(function: Any) -> TaskResult:
    """Executes one task the way conductor-python's AsyncTaskRunner does (which it picks for an
    ``async def`` worker, and which passes arguments by name from the task input)."""
    worker = Worker("charge", keybrake_worker(function, proxy_url="http://keybrake:8080"))
    runner = AsyncTaskRunner(worker, CONFIGURATION)
    result: TaskResult = asyncio.run(runner._AsyncTaskRunner__async_execute_task(a_task("t-async")))  # type: ignore[attr-defined]
    return result


def logs_of(result: TaskResult) -> List[str]:
    return [entry.log or "" for entry in result.logs or []]


# --- 1. async workers are awaited; TaskInProgress passes through -----------------------------


def test_async_worker_is_awaited_on_the_async_task_runner() -> None:
    seen: Dict[str, Any] = {}

    async def charge(task: Task, keybrake: KeybrakeTaskContext) -> Dict[str, Any]:
        await asyncio.sleep(0)
        seen["input"] = dict(task.input_data)
        return {"charged": task.input_data["customerId"], "echo": keybrake.vault_key}

    result = run_async(charge)
    assert result.status == "COMPLETED"
    assert result.task_id == "t-async"
    assert seen["input"] == {"customerId": "cus_3"}
    assert result.output_data == {"charged": "cus_3", "echo": VAULT_KEY_REDACTED}


def test_async_worker_cap_hit_is_terminal() -> None:
    async def charge(task: Task, keybrake: KeybrakeTaskContext) -> Dict[str, Any]:
        await asyncio.sleep(0)
        raise CapExhaustedError()

    result = run_async(charge)
    assert result.status == "FAILED_WITH_TERMINAL_ERROR"
    assert result.task_id == "t-async"
    assert result.output_data["error"]["code"] == "cap_exhausted"


def test_async_worker_is_awaited_through_worker_execute() -> None:
    async def charge(task: Task, keybrake: KeybrakeTaskContext) -> Dict[str, Any]:
        await asyncio.sleep(0)
        return {"ok": True}

    worker = Worker("charge", keybrake_worker(charge, proxy_url="http://keybrake:8080"))
    worker.execute(a_task())  # submitted to the SDK's background loop
    with worker._pending_tasks_lock:  # type: ignore[attr-defined]
        future = next(iter(worker._pending_async_tasks.values()))[0]  # type: ignore[attr-defined]
    future.result()
    [(_, result, _, _)] = worker.check_completed_async_tasks()
    assert result.status == "COMPLETED" and result.output_data == {"ok": True}


def test_task_in_progress_passes_through_redacted() -> None:
    def poll(task: Task, keybrake: KeybrakeTaskContext) -> TaskInProgress:
        return TaskInProgress(callback_after_seconds=30, output={"progress": 50, "key": keybrake.vault_key})

    result = run_sync(poll)
    assert result.status == "IN_PROGRESS"
    assert result.callback_after_seconds == 30
    assert result.output_data == {"progress": 50, "key": VAULT_KEY_REDACTED}


# --- 3. the contexts' repr hides the vault key ---------------------------------------------------


def test_contexts_repr_and_str_hide_the_vault_key() -> None:
    conductor = KeybrakeTaskContext(vault_key=VAULT_KEY, proxy_url="http://p", workflow_instance_id="wf", reference_task_name="r")
    temporal = KeybrakeActivityContext(vault_key=VAULT_KEY, key_id="kid", proxy_url="http://p", workflow_id="wf", activity_id="1")
    for context in (conductor, temporal):
        assert VAULT_KEY not in repr(context) and VAULT_KEY not in str(context) and VAULT_KEY not in f"{context}"
        assert "proxy_url='http://p'" in repr(context)
        assert context.vault_key == VAULT_KEY


# --- 4. task-context logs and output are redacted ------------------------------------------------


def test_task_context_logs_and_output_are_redacted() -> None:
    def charge(task: Task, keybrake: KeybrakeTaskContext) -> Dict[str, Any]:
        get_task_context().add_log(f"charging with {keybrake.vault_key}")
        return {"ok": True}

    result = run_sync(charge)
    assert result.status == "COMPLETED"
    assert logs_of(result) == [f"charging with {VAULT_KEY_REDACTED}"]

    async def charge_async(task: Task, keybrake: KeybrakeTaskContext) -> Dict[str, Any]:
        get_task_context().add_log(f"charging with {keybrake.vault_key}")
        return {"ok": True}

    result = run_async(charge_async)
    assert logs_of(result) == [f"charging with {VAULT_KEY_REDACTED}"]


def test_task_context_logs_are_redacted_when_the_task_fails() -> None:
    def charge(task: Task, keybrake: KeybrakeTaskContext) -> Dict[str, Any]:
        get_task_context().add_log(f"charging with {keybrake.vault_key}")
        raise CapExhaustedError()

    result = run_sync(charge)
    assert result.status == "FAILED_WITH_TERMINAL_ERROR"
    assert all(VAULT_KEY not in log for log in logs_of(result))


# --- 5. outputs normalised as conductor-python does, then redacted ------------------------------


@dataclasses.dataclass
class Charge:
    payment_intent_id: str
    authorization: str


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (Charge("pi_1", f"Bearer {VAULT_KEY}"), {"payment_intent_id": "pi_1", "authorization": f"Bearer {VAULT_KEY_REDACTED}"}),
        (42, {"result": 42}),
        ("done", {"result": "done"}),
        ([VAULT_KEY, 1], {"result": [VAULT_KEY_REDACTED, 1]}),
        (None, {"result": None}),
    ],
)
def test_outputs_are_normalised_like_the_sdk_then_redacted(output: Any, expected: Dict[str, Any]) -> None:
    result = run_sync(lambda task, keybrake: output)
    assert result.status == "COMPLETED"
    assert result.output_data == expected


def test_normalisation_matches_the_sdk_for_a_worker_without_keybrake() -> None:
    # The same outputs through conductor-python's Worker.execute alone: what we must match.
    for output in (Charge("pi_1", "x"), 42, [1, 2], None):
        plain = Worker("plain", lambda task, output=output: output)
        wrapped = run_sync(lambda task, keybrake, output=output: output)
        assert wrapped.output_data == plain.execute(a_task()).output_data


# --- 9. KEYBRAKE_PROXY_URL is read when a task runs, not at import ------------------------------


def test_proxy_url_is_resolved_when_the_first_task_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KEYBRAKE_PROXY_URL", raising=False)
    seen: Dict[str, str] = {}

    @keybrake_worker
    def charge(task: Task, keybrake: KeybrakeTaskContext) -> Dict[str, Any]:
        seen["proxy_url"] = keybrake.proxy_url
        return {}

    @keybrake_worker()
    def refund(task: Task, keybrake: KeybrakeTaskContext) -> Dict[str, Any]:
        return {}

    missing = Worker("charge", charge).execute(a_task())
    assert missing.status == "FAILED" and "KEYBRAKE_PROXY_URL" in (missing.reason_for_incompletion or "")
    monkeypatch.setenv("KEYBRAKE_PROXY_URL", "http://keybrake:8080")
    assert Worker("charge", charge).execute(a_task()).status == "COMPLETED"
    assert Worker("refund", refund).execute(a_task()).status == "COMPLETED"
    assert seen["proxy_url"] == "http://keybrake:8080"


def test_a_module_with_decorated_workers_imports_without_keybrake_proxy_url(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.delenv("KEYBRAKE_PROXY_URL", raising=False)
    (tmp_path / "kb_workers_module.py").write_text(
        "from keybrake.conductor import keybrake_worker\n"
        "@keybrake_worker()\n"
        "def charge(task, keybrake):\n"
        "    return {}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("kb_workers_module")
    sys.modules.pop("kb_workers_module", None)
    assert callable(module.charge)


# --- 8. every Stripe host points at the proxy ----------------------------------------------------


class _Recorder:
    """A loopback HTTP server that records each request's path and answers a Stripe-shaped 200."""

    def __init__(self) -> None:
        import http.server
        import threading

        self.paths: List[str] = []
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                recorder.paths.append(self.path)
                body = b'{"id": "file_1", "object": "file", "access_token": "tok", "token_type": "bearer"}'
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_stripe_options_send_files_and_connect_calls_to_the_proxy_too() -> None:
    import io

    import stripe

    from keybrake.stripe import stripe_options

    proxy = _Recorder()
    try:
        client = stripe.StripeClient(VAULT_KEY, **stripe_options(proxy.url, max_network_retries=0))
        client.v1.files.create({"purpose": "dispute_evidence", "file": io.BytesIO(b"evidence")})  # the files host
        client.oauth.token({"grant_type": "authorization_code", "code": "ac_1"})  # the connect host
        client.v1.customers.list()  # the api host
    finally:
        proxy.close()
    assert proxy.paths[0] == "/stripe/v1/files"
    assert proxy.paths[1] == "/stripe/oauth/token"
    assert proxy.paths[2].startswith("/stripe/v1/customers")


# --- 6. the proxy's header decides, not a body that says cap_exhausted --------------------------


@pytest.mark.parametrize("headers", [{}, None, {"retry-after": "1"}], ids=["empty", "none", "vendor-headers"])
def test_a_stripe_error_whose_body_says_cap_exhausted_without_the_header_is_not_a_cap_hit(headers: Any) -> None:
    import stripe

    from keybrake import is_cap_hit, keybrake_refusal

    body = {"error": {"code": "cap_exhausted", "message": "the vendor's own cap_exhausted"}}
    vendors = stripe.RateLimitError("cap_exhausted", http_status=429, json_body=body, headers=headers)
    assert not is_cap_hit(vendors)
    assert keybrake_refusal(vendors) is None
    forbidden = stripe.PermissionError(
        "no", http_status=403, json_body={"error": {"code": "tainted_request_refused"}}, headers=headers
    )
    assert keybrake_refusal(forbidden) is None
    capped = stripe.RateLimitError("cap", http_status=429, json_body=body, headers={"X-Keybrake-Cap-Hit": "true"})
    assert is_cap_hit(capped) and keybrake_refusal(capped) == "cap_exhausted"


# --- 7. keybrake-exec's relay: chunked bodies, repeated headers, a non-HTTP answer ---------------


class _RawUpstream:
    """A loopback TCP server playing the proxy: records each request's raw head and body, and
    answers ``answer`` (raw bytes: a valid response, or garbage that is not HTTP)."""

    def __init__(self, answer: bytes) -> None:
        import socket
        import threading

        self.requests: List[bytes] = []
        self._answer = answer
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen()
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            with connection:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = connection.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                head, _, rest = data.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                while len(rest) < length:
                    rest += connection.recv(65536)
                self.requests.append(head + b"\r\n\r\n" + rest)
                connection.sendall(self._answer)

    def close(self) -> None:
        self._socket.close()


PROGRAM = """
import http.client, os, sys
from urllib.parse import urlsplit
target = urlsplit(os.environ["KEYBRAKE_PROXY_URL"])
connection = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
connection.putrequest("POST", "/stripe/v1/files")
connection.putheader("Transfer-Encoding", "chunked")
connection.putheader("X-Repeated", "one")
connection.putheader("X-Repeated", "two")
connection.endheaders()
for piece in (b"purpose=", b"dispute_evidence", b"&x=1"):
    connection.send(b"%x\\r\\n%s\\r\\n" % (len(piece), piece))
connection.send(b"0\\r\\n\\r\\n")
answer = connection.getresponse()
print(answer.status, answer.read().decode(), answer.getheader("set-cookie"), len(answer.msg.get_all("set-cookie") or []))
"""


def test_exec_relay_forwards_chunked_bodies_and_repeated_headers(capfd: pytest.CaptureFixture[str]) -> None:
    from keybrake.exec import run_exec

    body = b'{"id":"file_1"}'
    upstream = _RawUpstream(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nset-cookie: a=1\r\nset-cookie: b=2\r\n"
        + b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
        + body
    )
    try:
        outcome = run_exec([sys.executable, "-c", PROGRAM], upstream.url, report=lambda line: None)
    finally:
        upstream.close()
    assert outcome.exit_code == 0
    # What the program got back: the answer, both set-cookie lines.
    assert capfd.readouterr().out.split() == ["200", '{"id":"file_1"}', "a=1,", "b=2", "2"]
    # What reached the upstream: the de-chunked body with its length, both X-Repeated lines.
    [request] = upstream.requests
    head, _, sent_body = request.partition(b"\r\n\r\n")
    lines = [line.lower() for line in head.split(b"\r\n")]
    assert lines[0] == b"post /stripe/v1/files http/1.1"
    assert sent_body == b"purpose=dispute_evidence&x=1"
    assert b"content-length: 28" in lines and not any(line.startswith(b"transfer-encoding") for line in lines)
    assert [line for line in lines if line.startswith(b"x-repeated")] == [b"x-repeated: one", b"x-repeated: two"]


def test_exec_relay_answers_502_when_the_upstream_answer_is_not_http(capfd: pytest.CaptureFixture[str]) -> None:
    from keybrake.exec import run_exec

    upstream = _RawUpstream(b"NOT HTTP AT ALL\r\n\r\n")
    try:
        outcome = run_exec([sys.executable, "-c", PROGRAM], upstream.url, report=lambda line: None)
    finally:
        upstream.close()
    out = capfd.readouterr().out
    assert out.startswith("502 ") and "proxy_unreachable" in out
    assert outcome.exit_code == 0
