"""The billing example's ``charge_customer`` worker in Python (conductor-python), for the e2e on a
real Conductor server (e2e/conductor/test/conductor.e2e.test.ts starts it):
``@worker_task`` + ``@keybrake_worker``, the official stripe SDK through the proxy, an idempotency
key stable across Conductor's retries of the task.

Environment: CONDUCTOR_SERVER_URL, KEYBRAKE_PROXY_URL; KEYBRAKE_E2E_CRASH_AFTER_CHARGE=1 makes it
charge one customer, print ``{"charged": ...}`` and die (SIGKILL) before it can tell Conductor:
what a worker pod evicted mid-task does.
"""

import json
import os
import signal
import sys

import stripe
from conductor.client.automator.task_handler import TaskHandler
from conductor.client.configuration.configuration import Configuration
from conductor.client.http.models.task import Task
from conductor.client.worker.worker import Worker

from keybrake.conductor import KeybrakeTaskContext, keybrake_worker
from keybrake.stripe import stripe_options

CRASH = os.environ.get("KEYBRAKE_E2E_CRASH_AFTER_CHARGE") == "1"


@keybrake_worker
def charge_customer(task: Task, keybrake: KeybrakeTaskContext) -> dict:
    # Conductor owns the retries: the SDK does not retry on its own here.
    client = stripe.StripeClient(keybrake.vault_key, **stripe_options(keybrake.proxy_url, max_network_retries=0))
    customer_id = str(task.input_data["customerId"])
    intent = client.v1.payment_intents.create(
        {
            "amount": int(task.input_data["amountCents"]),
            "currency": str(task.input_data.get("currency") or "usd"),
            "customer": customer_id,
            "description": "keybrake example (python worker)",
        },
        {"idempotency_key": keybrake.idempotency_key("charge", customer_id)},
    )
    output = {"paymentIntentId": intent.id, "amountCents": intent.amount, "worker": "python"}
    if CRASH:
        sys.stdout.write(json.dumps({"charged": output, "referenceTaskName": task.reference_task_name}) + "\n")
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    return output


def main() -> None:
    worker = Worker(
        task_definition_name="charge_customer",
        execute_function=charge_customer,
        poll_interval=100,
        thread_count=1 if CRASH else 10,
    )
    handler = TaskHandler(
        workers=[worker],
        configuration=Configuration(server_api_url=os.environ["CONDUCTOR_SERVER_URL"]),
        scan_for_annotated_workers=False,
        monitor_processes=False,
    )
    signal.signal(signal.SIGTERM, lambda *_: (handler.stop_processes(), sys.exit(0)))
    handler.start_processes()
    print("python worker polling charge_customer", flush=True)
    handler.join_processes()


if __name__ == "__main__":
    main()
