"""Start ``python app.py --tiny-random`` on a free localhost port for the app tests; stop it.

Not a test module (no ``test_`` prefix): test_app_api.py and test_app_browser.py import it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class AppServer:
    """The demo in a subprocess, bound to 127.0.0.1, with the tiny random models.

    Use as a context manager; the log (stdout + stderr) is in ``log_path``; ``env`` adds
    environment variables (request limits, for example).
    """

    def __init__(
        self,
        log_path: Path,
        *extra_args: str,
        timeout: float = 180.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = Path(log_path)
        self.timeout = timeout
        self.env = dict(env or {})  # extra environment variables (e.g. GROUNDED_SAM_WEB_*)
        self.args = [
            sys.executable, str(ROOT / "app.py"), "--tiny-random", "--host", "127.0.0.1",
            "--port", str(self.port), *extra_args,
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> AppServer:
        env = dict(os.environ)
        env.update(
            GRADIO_ANALYTICS_ENABLED="False",
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "2"),
            PYTHONUNBUFFERED="1",
        )
        env.update(self.env)
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in __exit__
        self.proc = subprocess.Popen(
            self.args, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )
        try:
            self._wait_ready()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"app.py exited with code {self.proc.returncode}:\n{self.log()[-4000:]}"
                )
            try:
                with urllib.request.urlopen(self.url + "config", timeout=5) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.5)
        raise TimeoutError(
            f"app.py did not answer on {self.url} in {self.timeout} s:\n{self.log()}"
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        self._log.close()
