"""issue 24: keybrake-exec (the console script) runs a program that charges through the real proxy
with the official stripe SDK, and maps a cap hit to exit 75, as the TypeScript CLI does."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable, Dict

from keybrake import KeybrakeClient, derive_idempotency_key

CHARGE = textwrap.dedent(
    """
    import os, sys, stripe
    from keybrake.stripe import stripe_options
    client = stripe.StripeClient(os.environ["KEYBRAKE_VAULT_KEY"], **stripe_options(os.environ["KEYBRAKE_PROXY_URL"], max_network_retries=0))
    try:
        intent = client.v1.payment_intents.create(
            {"amount": int(sys.argv[1]), "currency": "usd"},
            {"idempotency_key": os.environ["KEYBRAKE_IDEMPOTENCY_KEY"]},
        )
    except stripe.StripeError as error:
        print("charge failed:", type(error).__name__, file=sys.stderr)
        sys.exit(1)  # a plain failure: keybrake-exec knows it was a cap hit
    print(intent.id)
    """
)


def exec_script() -> str:
    return str(Path(sys.executable).with_name("keybrake-exec"))


def run(proxy_url: str, vault_key_file: Path, amount: int, part: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [exec_script(), "--proxy-url", proxy_url, "--vault-key-file", str(vault_key_file), "--idempotency-part", "wf-exec", "--idempotency-part", part, "--", sys.executable, "-c", CHARGE, str(amount)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )


def test_a_cap_hit_exits_75_and_a_charge_within_the_cap_exits_0(admin: KeybrakeClient, proxy_url: str, tmp_path: Path, witness: Callable[[], Dict[str, Any]]) -> None:
    key = admin.issue_vault_key(vendor="stripe", usd_cap=10, allowed_endpoints=["POST /v1/payment_intents"], expires_in="10m")
    key_file = tmp_path / "vault-key"
    key_file.write_text(key["vault_key"] + "\n")
    before = witness()["stripe_charges"]
    ok = run(proxy_url, key_file, 600, "item-1")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip().startswith("pi_")
    capped = run(proxy_url, key_file, 600, "item-2")
    assert capped.returncode == 75, capped.stderr
    assert "cap_exhausted" in capped.stderr and key["vault_key"] not in capped.stderr
    # A retry of the first step (same parts) is replayed: one charge each, the cap hit none.
    again = run(proxy_url, key_file, 600, "item-1")
    assert again.returncode == 0 and again.stdout == ok.stdout
    assert witness()["stripe_charges"] == before + 1
    calls = admin.list_calls(key["key_id"])
    assert [call["outcome"] for call in calls] == ["forwarded", "blocked", "replayed"]
    assert calls[0]["idempotency_key"] == derive_idempotency_key(["wf-exec", "item-1"])


def test_the_programs_own_code_passes_through_and_usage_errors_are_2(proxy_url: str) -> None:
    own = subprocess.run([exec_script(), "--proxy-url", proxy_url, "--", sys.executable, "-c", "import sys; sys.exit(3)"], capture_output=True)
    assert own.returncode == 3
    missing = subprocess.run([exec_script(), "--proxy-url", proxy_url, "--", "/nonexistent/program"], capture_output=True)
    assert missing.returncode == 127
    assert subprocess.run([exec_script(), "--proxy-url", proxy_url], capture_output=True).returncode == 2
    env = {k: v for k, v in os.environ.items() if k not in ("KEYBRAKE_PROXY_URL", "KEYBRAKE_URL")}
    assert subprocess.run([exec_script(), "--", "true"], capture_output=True, env=env).returncode == 2
