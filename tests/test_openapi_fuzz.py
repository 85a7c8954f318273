"""Schemathesis over /openapi.json against a real `logstore serve`: the document and the server
agree (item 9 of issue #14).

Every operation, every phase (examples, coverage, fuzzing, and the stateful phase that follows
the document's links: create a topic, publish to it, subscribe, poll, ack...), every check,
zero failures, with and without an auth file. The number of examples is bounded so the test
stays around a minute on two cores; docs/HTTP.md gives the command of the longer run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_server_support import ServeProcess

pytest_plugins = ["test_server_support"]

ADMIN_TOKEN = "fuzz-admin-token-0123456789"
MAX_EXAMPLES = 8
SEED = 14
_ST = Path(sys.executable).with_name("st")
_SETTINGS = Path(__file__).with_name("schemathesis")
"""schemathesis.toml (checks' settings) and hooks.py (what JSON Schema cannot say)."""


def schemathesis_run(url: str, workdir: Path, *extra: str, timeout: float = 300) -> str:
    """Run `st run` on the server's document; its output, or a failure showing it."""
    command = [
        str(_ST),
        "--config-file",
        str(_SETTINGS / "schemathesis.toml"),
        "run",
        f"{url}/openapi.json",
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--workers",
        "1",
        "--generation-database",
        "none",
        "--request-timeout",
        "1.5",
        "--no-color",
        *extra,
    ]
    result = subprocess.run(
        command,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={
            **os.environ,
            "SCHEMATHESIS_TELEMETRY": "false",
            "SCHEMATHESIS_HOOKS": "hooks",
            "PYTHONPATH": str(_SETTINGS),
        },
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, _readable(output)
    return output


def _readable(output: str) -> str:
    """The failures and the summary, each line cut short (a reproducing curl can hold a
    whole generated batch)."""
    failures = output[output.find("= FAILURES =") :] if "= FAILURES =" in output else output
    return "\n".join(line[:400] for line in failures.splitlines())[-30000:]


@pytest.fixture
def serve(tmp_path):
    """Start `logstore serve` (extra arguments given) and stop it however the test ends."""
    processes = []

    def start(*args: str) -> ServeProcess:
        process = ServeProcess(tmp_path / "data", "--fsync", "never", *args)
        processes.append(process)
        return process

    yield start
    for process in processes:
        _, err = process.stop()
        assert "Traceback" not in err, err[-5000:]


def test_schemathesis_finds_no_failure_without_auth(serve, tmp_path):
    server = serve()
    output = schemathesis_run(server.url, tmp_path)
    assert "stateful" in output.lower()


def test_schemathesis_finds_no_failure_with_auth(serve, tmp_path):
    auth_file = tmp_path / "auth.json"
    auth_file.write_text(
        json.dumps({"tokens": [{"name": "fuzz", "token": ADMIN_TOKEN, "admin": True}]})
    )
    server = serve("--auth-file", str(auth_file))
    schemathesis_run(server.url, tmp_path, "--header", f"Authorization: Bearer {ADMIN_TOKEN}")
