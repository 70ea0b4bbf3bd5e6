"""The real local broker for the tests: ``npm start``'s dev server, started once per test run.

It runs the broker's own code in front of an embedded OpenID provider, checks SigV4 signatures with a key pair
it makes at start, and also answers the Lambda Invoke API. The tests talk to it over loopback the way a caller
talks to a deployment, and read its log lines (one JSON object each) to count what the broker was asked.
"""

from __future__ import annotations

import atexit
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

REPO_ROOT = Path(__file__).resolve().parents[3]
# Under CI every part must be there: a skip would hide a missing dependency.
IN_CI = bool(os.environ.get("CI"))


class LocalBroker:
    def __init__(self) -> None:
        self._work = tempfile.mkdtemp(prefix="token-broker-py-")
        credentials_file = os.path.join(self._work, "credentials.json")
        node = os.environ.get("NODE", shutil.which("node") or "node")
        env = {**os.environ, "PORT": "0", "TOKEN_BROKER_LOCAL_CREDENTIALS_FILE": credentials_file}
        self._process = subprocess.Popen(
            [node, "--import", "tsx", str(REPO_ROOT / "lambdas" / "local" / "dev-server.ts")],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lines: List[str] = []
        self._lock = threading.Lock()
        listening = threading.Event()
        self.base_url = ""

        def read_stdout() -> None:
            assert self._process.stdout is not None
            for line in self._process.stdout:
                with self._lock:
                    self._lines.append(line)

        def read_stderr() -> None:
            assert self._process.stderr is not None
            for line in self._process.stderr:
                with self._lock:
                    self._lines.append(line)
                match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
                if match and not listening.is_set():
                    self.base_url = match.group(1)
                    listening.set()

        threading.Thread(target=read_stdout, daemon=True).start()
        threading.Thread(target=read_stderr, daemon=True).start()
        if not listening.wait(60):
            self.close()
            raise RuntimeError(f"the dev server did not start:\n{self.output()}")
        with open(credentials_file, encoding="utf8") as file:
            document = json.load(file)
        self.caller: Dict[str, Any] = document["caller"]
        self.client_secrets = [
            entry["client_secret"] for entry in document.get("clients", {}).values() if "client_secret" in entry
        ]
        #: What `npm start` tells its user to export: keys, region, TOKEN_BROKER_URL, AWS_ENDPOINT_URL_LAMBDA.
        self.environment: Dict[str, str] = dict(self.caller["environment"])

    def use_as_caller(self) -> None:
        """This process becomes the caller `npm start` was started for, as if its variables were exported."""
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_PROFILE"):
            os.environ.pop(name, None)
        os.environ.update(self.environment)

    def output(self) -> str:
        with self._lock:
            return "".join(self._lines)

    def served(self, **match: Any) -> List[Dict[str, Any]]:
        """The broker's `token served` audit lines whose fields equal ``match``, waiting briefly for stragglers."""
        time.sleep(0.05)
        lines = []
        for raw in self.output().splitlines():
            if not raw.startswith("{"):
                continue
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if line.get("message") == "token served" and all(line.get(k) == v for k, v in match.items()):
                lines.append(line)
        return lines

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)
        for pipe in (self._process.stdout, self._process.stderr):
            if pipe is not None:
                pipe.close()
        shutil.rmtree(self._work, ignore_errors=True)


_broker: Optional[LocalBroker] = None


def local_broker() -> LocalBroker:
    """One dev server for the whole run, stopped when the interpreter exits."""
    global _broker
    if _broker is None:
        _broker = LocalBroker()
        _broker.use_as_caller()
        atexit.register(_broker.close)
    return _broker


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ResourceServer:
    """A resource server on loopback that refuses the first ``refusals`` requests with 401 and records each."""

    def __init__(self, refusals: int) -> None:
        self.refusals = refusals
        self.authorizations: List[Optional[str]] = []
        self.bodies: List[bytes] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                outer.bodies.append(self.rfile.read(length) if length else b"")
                outer.authorizations.append(self.headers.get("authorization"))
                refused = len(outer.authorizations) <= outer.refusals
                payload = b'{"resourceType":"OperationOutcome"}' if refused else b'{"resourceType":"Patient"}'
                self.send_response(401 if refused else 200)
                self.send_header("content-type", "application/fhir+json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = _answer
            do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/Patient/1"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
