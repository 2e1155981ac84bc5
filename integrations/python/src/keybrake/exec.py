"""``keybrake-exec``: a container entry point for Argo and any other engine, the Python twin of
the TypeScript ``keybrake-exec`` (same options, environment variables and exit codes).

    keybrake-exec [--proxy-url URL] [--vault-key-file FILE] [--idempotency-part P]... -- PROGRAM [ARGS...]

The program gets ``KEYBRAKE_PROXY_URL`` (a loopback relay to the proxy), ``KEYBRAKE_VAULT_KEY`` and
``KEYBRAKE_IDEMPOTENCY_KEY`` (derived from the ``--idempotency-part`` values, else inherited). If it
exits non-zero after Keybrake refused one of its calls for good, this exits with that refusal's
code (75 for a cap hit, see :data:`keybrake.KEYBRAKE_EXIT_CODES`); otherwise with the program's.
"""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, List, Mapping, Optional, Sequence
from urllib.parse import urlsplit

from .exit_codes import KEYBRAKE_EXIT_CODE_MAX, KEYBRAKE_EXIT_CODE_MIN, KEYBRAKE_EXIT_CODES
from .idempotency import derive_idempotency_key
from .refusal import CAP_HIT_HEADER, ERROR_HEADER, TERMINAL_REFUSALS

EXIT_USAGE = 2
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "host", "content-length"}


@dataclass(frozen=True)
class ExecOutcome:
    #: The exit code to end with.
    exit_code: int
    #: The last final Keybrake refusal the program met, if any.
    refusal: Optional[str]


def _start_relay(proxy_url: str, on_refusal: Callable[[str], None]) -> ThreadingHTTPServer:
    """A loopback relay in front of the proxy: the program's calls pass through unchanged, and it
    notes every final refusal the proxy gives, whatever SDK or language the program uses."""
    target = urlsplit(proxy_url)
    base_path = target.path.rstrip("/")
    https = target.scheme == "https"
    host = target.hostname or "127.0.0.1"
    port = target.port or (443 if https else 80)

    class Relay(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
            pass  # the relay stays quiet: URLs may carry identifiers, never log them

        def _read_body(self) -> Optional[bytes]:
            if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
                # A chunked upload (what an SDK streaming a body sends): de-chunked, then sent on
                # with a content-length.
                chunks: List[bytes] = []
                while True:
                    size_line = self.rfile.readline(65537)
                    size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                            pass  # trailers
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline(65537)  # the CRLF after the chunk
            length = int(self.headers.get("content-length") or 0)
            return self.rfile.read(length) if length else None

        def _refuse(self) -> None:
            # Not the proxy's refusal: the program sees a 502, which its own retry logic may retry.
            payload = b'{"error":{"code":"proxy_unreachable","message":"keybrake-exec could not reach the proxy"}}'
            self.send_response(502)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _relay(self) -> None:
            try:
                body = self._read_body()
            except ValueError:  # a malformed chunk size
                self.send_error(400)
                return
            connection: http.client.HTTPConnection = (
                http.client.HTTPSConnection(host, port, timeout=300) if https else http.client.HTTPConnection(host, port, timeout=300)
            )
            try:
                connection.putrequest(self.command, f"{base_path}{self.path}", skip_accept_encoding=True)
                # Every header line as it came (a repeated header stays repeated).
                for name, value in self.headers.items():
                    if name.lower() not in _HOP_BY_HOP:
                        connection.putheader(name, value)
                if body is not None:
                    connection.putheader("Content-Length", str(len(body)))
                connection.endheaders(body)
                answer = connection.getresponse()
                data = answer.read()
            except (OSError, http.client.HTTPException):
                # The proxy is unreachable, or what came back is not HTTP (HTTPException is no OSError).
                self._refuse()
                return
            finally:
                connection.close()
            code = answer.getheader(ERROR_HEADER)
            if code in TERMINAL_REFUSALS:
                on_refusal(code)
            elif answer.getheader(CAP_HIT_HEADER) == "true":
                on_refusal("cap_exhausted")
            self.send_response_only(answer.status, answer.reason)
            for name, value in answer.getheaders():
                if name.lower() not in _HOP_BY_HOP:
                    self.send_header(name, value)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _relay

    server = ThreadingHTTPServer(("127.0.0.1", 0), Relay)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def run_exec(
    command: Sequence[str],
    proxy_url: str,
    *,
    vault_key: Optional[str] = None,
    idempotency_parts: Optional[Sequence[str]] = None,
    env: Optional[Mapping[str, str]] = None,
    report: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
) -> ExecOutcome:
    """Runs a program with what it needs to call vendors through Keybrake, and maps a final refusal
    to an exit code: the refusal's code if the program exits non-zero after one (a cap hit is 75:
    the program need not know the convention), otherwise the program's code (128 + the signal
    number if a signal ended it; 127 if it could not be started)."""
    refusal: List[str] = []
    relay = _start_relay(proxy_url, refusal.append)
    try:
        child_env = dict(os.environ if env is None else env)
        child_env["KEYBRAKE_PROXY_URL"] = f"http://127.0.0.1:{relay.server_address[1]}"
        if vault_key is not None:
            child_env["KEYBRAKE_VAULT_KEY"] = vault_key
        if idempotency_parts:
            child_env["KEYBRAKE_IDEMPOTENCY_KEY"] = derive_idempotency_key(list(idempotency_parts))
        program = command[0]
        try:
            child = subprocess.Popen(list(command), env=child_env)
        except OSError as error:
            report(f"keybrake-exec: could not start {program}: {error.strerror or error}")
            return ExecOutcome(127, refusal[-1] if refusal else None)
        forwarded = {}
        in_main_thread = threading.current_thread() is threading.main_thread()
        if in_main_thread:
            for signum in (signal.SIGTERM, signal.SIGINT):
                forwarded[signum] = signal.signal(signum, lambda number, _frame: child.send_signal(number))
        try:
            returncode = child.wait()
        finally:
            for signum, previous in forwarded.items():
                signal.signal(signum, previous)
        own = 128 - returncode if returncode < 0 else returncode
        last = refusal[-1] if refusal else None
        if own == 0 or KEYBRAKE_EXIT_CODE_MIN <= own <= KEYBRAKE_EXIT_CODE_MAX:
            return ExecOutcome(own, last)
        if last is not None:
            exit_code = KEYBRAKE_EXIT_CODES[last]
            report(f"keybrake-exec: {program} exited {own} after Keybrake refused a call ({last}); exiting {exit_code}")
            return ExecOutcome(exit_code, last)
        return ExecOutcome(own, last)
    finally:
        relay.shutdown()
        relay.server_close()


_USAGE = __doc__.split("\n\n", 2)[1].strip() if __doc__ else ""


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The ``keybrake-exec`` console script; returns (and, as a script, exits with) the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    separator = args.index("--") if "--" in args else len(args)
    own, command = args[:separator], args[separator + 1 :]
    parser = argparse.ArgumentParser(prog="keybrake-exec", usage=_USAGE, description="run a program that calls vendors through Keybrake")
    parser.add_argument("--proxy-url")
    parser.add_argument("--vault-key-file")
    parser.add_argument("--idempotency-part", action="append")
    try:
        options = parser.parse_args(own)
    except SystemExit as stop:
        return 0 if stop.code == 0 else EXIT_USAGE
    if not command:
        print(f"keybrake-exec: no program given after --\n{_USAGE}", file=sys.stderr)
        return EXIT_USAGE
    proxy_url = options.proxy_url or os.environ.get("KEYBRAKE_PROXY_URL") or os.environ.get("KEYBRAKE_URL")
    if not proxy_url:
        print("keybrake-exec: set --proxy-url or KEYBRAKE_PROXY_URL", file=sys.stderr)
        return EXIT_USAGE
    vault_key: Optional[str] = None
    if options.vault_key_file is not None:
        try:
            with open(options.vault_key_file, encoding="utf-8") as file:
                vault_key = file.read().strip()
        except OSError as error:
            print(f"keybrake-exec: cannot read the vault key file: {error.strerror}", file=sys.stderr)
            return EXIT_USAGE
    return run_exec(command, proxy_url, vault_key=vault_key, idempotency_parts=options.idempotency_part).exit_code


def _script() -> None:
    sys.exit(main())
