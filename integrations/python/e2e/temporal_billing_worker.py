"""A Python Temporal worker for the e2e on the Temporal dev server (e2e/temporal/test/temporal.e2e.test.ts
starts it): the billing example as a Python workflow that fans out one charge activity per
customer under one vault key (``with_vault_key``), the activities charging with the official
stripe SDK through the proxy, on a worker with ``KeybrakeInterceptor``.

Environment: TEMPORAL_ADDRESS, TEMPORAL_TASK_QUEUE, KEYBRAKE_URL (the admin API), KEYBRAKE_ISSUER_KEY,
KEYBRAKE_PROXY_URL (where activities send vendor calls), KEYBRAKE_SEAL_SECRET.
"""

import asyncio
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any, Dict, List

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    import stripe

    from keybrake import KeybrakeClient
    from keybrake.stripe import stripe_options
    from keybrake.temporal import CAP_EXHAUSTED_FAILURE, KeybrakeInterceptor, keybrake, keybrake_activities, with_vault_key


@activity.defn(name="pyChargeCustomer")
def charge_customer(customer: Dict[str, Any]) -> Dict[str, Any]:
    kb = keybrake()
    # Temporal owns the retries: the SDK does not retry on its own here.
    client = stripe.StripeClient(kb.vault_key, **stripe_options(kb.proxy_url, max_network_retries=0))
    intent = client.v1.payment_intents.create(
        {"amount": int(customer["amountCents"]), "currency": "usd", "customer": customer["customerId"]},
        {"idempotency_key": kb.idempotency_key("charge", customer["customerId"])},
    )
    return {"paymentIntentId": intent.id, "amountCents": intent.amount, "attempt": activity.info().attempt}


@workflow.defn(name="pyBillingWorkflow")
class BillingWorkflow:
    @workflow.run
    async def run(self, input: Dict[str, Any]) -> Dict[str, Any]:
        customers: List[Dict[str, Any]] = input["customers"]

        async def charge_all(key_id: str) -> Dict[str, Any]:
            results = await asyncio.gather(
                *(
                    workflow.execute_activity(
                        "pyChargeCustomer",
                        customer,
                        start_to_close_timeout=timedelta(seconds=30),
                        retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_attempts=5),
                    )
                    for customer in customers
                ),
                return_exceptions=True,
            )
            summary: Dict[str, Any] = {"keyId": key_id, "charged": 0, "capped": 0, "failed": 0, "chargedCents": 0, "paymentIntents": []}
            for result in results:
                if isinstance(result, ActivityError) and isinstance(result.cause, ApplicationError) and result.cause.type == CAP_EXHAUSTED_FAILURE:
                    summary["capped"] += 1
                elif isinstance(result, BaseException):
                    summary["failed"] += 1
                else:
                    summary["charged"] += 1
                    summary["chargedCents"] += result["amountCents"]
                    summary["paymentIntents"].append(result["paymentIntentId"])
            return summary

        return await with_vault_key(
            {"vendor": "stripe", "usd_cap": input["capUsd"], "allowed_endpoints": ["POST /v1/payment_intents"]}, charge_all
        )


@workflow.defn(name="pyAwaitingApprovalWorkflow")
class AwaitingApprovalWorkflow:
    """Charges one customer, then waits a day for an approval that never comes: the e2e cancels it."""

    @workflow.run
    async def run(self, input: Dict[str, Any]) -> None:
        async def charge_then_wait(key_id: str) -> None:
            await workflow.execute_activity(
                "pyChargeCustomer", input["customers"][0], start_to_close_timeout=timedelta(seconds=30)
            )
            await asyncio.sleep(86_400)

        await with_vault_key(
            {"vendor": "stripe", "usd_cap": input["capUsd"], "allowed_endpoints": ["POST /v1/payment_intents"]},
            charge_then_wait,
        )


async def main() -> None:
    temporal = await Client.connect(os.environ["TEMPORAL_ADDRESS"])
    admin = KeybrakeClient(os.environ["KEYBRAKE_URL"], os.environ["KEYBRAKE_ISSUER_KEY"])
    seal_secret = os.environ["KEYBRAKE_SEAL_SECRET"]
    with ThreadPoolExecutor(max_workers=20) as executor:
        worker = Worker(
            temporal,
            task_queue=os.environ["TEMPORAL_TASK_QUEUE"],
            workflows=[BillingWorkflow, AwaitingApprovalWorkflow],
            activities=[*keybrake_activities(admin, seal_secret=seal_secret), charge_customer],
            interceptors=[KeybrakeInterceptor(proxy_url=os.environ["KEYBRAKE_PROXY_URL"], seal_secret=seal_secret)],
            activity_executor=executor,
            max_concurrent_activities=20,
        )
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        async with worker:
            print("python temporal worker running", flush=True)
            await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
