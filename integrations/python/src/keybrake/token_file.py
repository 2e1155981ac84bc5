"""Issue 25: workload identity. A token provider that reads a bearer token from a file and reads it
again whenever the file changes, as Kubernetes rotates a projected service-account token."""

from __future__ import annotations

import os
import threading
import time
from typing import Callable, Optional, Tuple

TokenProvider = Callable[[], str]
"""Called before every admin request for the bearer token to send (a JWT from a trusted issuer)."""

_Version = Tuple[int, int, int, int, int]


class TokenFileError(Exception):
    """The token file cannot give a token (missing, unreadable, empty, or not one header-safe
    token). Carries the path only, never the file's text."""

    code = "token_file_unreadable"

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{reason} ({path})")
        self.path = path


class TokenFile:
    """A token provider over a file, e.g. ``TokenFile("/var/run/secrets/keybrake/token")``.

    Kubernetes rotates a projected token by writing a new timestamped folder and renaming the
    ``..data`` symlink over to it; the token path is a symlink through ``..data``, so ``os.stat``
    (which follows symlinks) sees another inode. The check is one ``stat`` per use, not a file
    watch, which would keep watching the old target. A file that looks unchanged is read again
    after ``max_age`` seconds anyway, in case it was rewritten in place within the file system's
    timestamp resolution. The token's text never appears in an error or a log line.
    """

    def __init__(self, path: str, *, max_age: float = 60.0) -> None:
        self._path = path
        self._max_age = max_age
        self._lock = threading.Lock()
        self._version: Optional[_Version] = None
        self._token = ""
        self._read_at = 0.0

    def __repr__(self) -> str:
        return f"TokenFile({self._path!r})"

    def __call__(self) -> str:
        with self._lock:
            try:
                # stat before reading: a swap between the two only makes the next call read again.
                stats = os.stat(self._path)
                version = (stats.st_dev, stats.st_ino, stats.st_size, stats.st_mtime_ns, stats.st_ctime_ns)
                if version == self._version and time.monotonic() - self._read_at < self._max_age:
                    return self._token
                with open(self._path, encoding="utf-8") as file:
                    text = file.read()
            except OSError as error:
                code = getattr(error, "errno", None)
                name = os.strerror(code) if isinstance(code, int) else "error"
                raise TokenFileError(self._path, f"cannot read the token file: {name}") from None
            token = text.strip()
            if not token:
                raise TokenFileError(self._path, "the token file is empty")
            # A header value cannot hold a line break or a control character: refuse, never quote it.
            if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in token):
                raise TokenFileError(self._path, "the token file holds whitespace or control characters inside the token")
            self._version = version
            self._token = token
            self._read_at = time.monotonic()
            return token
