"""The README and every page of docs/ run as written: each shell and Python block, in order.

A page's blocks run as a reader would run them, one after the other in one directory (where
`examples/` is at hand, as in the clone's root), with the venv's bin first on PATH, against a
fresh `logstore serve` on a free 127.0.0.1 port that replaces 8080 in the text. Shell blocks
run in `bash -e -o pipefail`; Python blocks in the venv's `python`; each must exit 0.

Markers in the Markdown source, on the line before a block (an HTML comment, so a reader of
the rendered page does not see it, and a reader of the source does):

- `<!-- docs-test: skip (why) -->`: not run (installs, streams until Ctrl-C, needs NATS...).
- `<!-- docs-test: server -->`: this block is the command that starts the server; the test
  runs it in the background with `LOGSTORE_PORT=0` and reads the address it prints.

Without a server block, the page gets `logstore serve`. A full-line comment `# -> TEXT` in
a block claims TEXT appears in what the block printed, after the previous claim's match;
`...` stands for anything, and whitespace is ignored (JSON answers come compact).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL = {"sh", "bash", "shell"}
PYTHON = {"python", "py"}
BLOCK = re.compile(
    r"(?:^<!--\s*docs-test:\s*(?P<mark>skip|server)\b[^>]*-->\n)?"
    r"^```(?P<lang>[\w-]*)\n(?P<code>.*?)^```",
    re.S | re.M,
)
CLAIM = re.compile(r"^\s*# -> (.*)$", re.M)
BLOCK_SECONDS = 45


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    lang: str
    mark: str | None
    code: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    text = page.read_text()
    found = []
    for m in BLOCK.finditer(text):
        line = text.count("\n", 0, m.start("code"))
        found.append(Block(page, line, m["lang"], m["mark"], m["code"]))
    return found


def runnable(block: Block) -> bool:
    return block.lang in SHELL | PYTHON and block.mark is None


def claims_met(code: str, output: str) -> str | None:
    """None when every `# -> ` claim of `code` is found in `output`, in order; else the
    first claim that is not."""
    squeezed = re.sub(r"\s+", "", output)
    position = 0
    for claim in CLAIM.findall(code):
        pattern = ".*?".join(re.escape(part) for part in re.sub(r"\s+", "", claim).split("..."))
        found = re.compile(pattern, re.S).search(squeezed, position)
        if found is None:
            return claim
        position = found.end()
    return None


def _environment(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGSTORE_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["HOME"] = str(tmp_path)
    return env


class Server:
    """A page's server block (or `logstore serve`) in the background, killed by its PID."""

    def __init__(self, command: str, cwd: Path, env: dict[str, str]):
        self.proc = subprocess.Popen(
            ["bash", "-c", f"exec {command.strip()}"],
            cwd=cwd,
            env={**env, "LOGSTORE_PORT": "0"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.port = None
        seen = []
        for line in self.proc.stderr:
            seen.append(line)
            match = re.search(r"serving https?://127\.0\.0\.1:(\d+)", line)
            if match:
                self.port = int(match.group(1))
                break
        if self.port is None:
            self.stop()
            raise AssertionError(f"{command!r} did not start a server:\n{''.join(seen)}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.communicate()
        return self.proc.returncode


def run_page(page: Path, tmp_path: Path) -> list[Block]:
    """Run the page's blocks in order; the blocks that ran."""
    found = blocks(page)
    if not any(runnable(b) for b in found):
        return []
    workdir = tmp_path / "walk"
    workdir.mkdir()
    (workdir / "examples").symlink_to(ROOT / "examples")
    env = _environment(tmp_path)
    servers = [b for b in found if b.mark == "server"]
    assert len(servers) <= 1, f"{page.name}: one server block at most"
    server = Server(servers[0].code if servers else "logstore serve", workdir, env)
    ran = []
    try:
        for block in found:
            if not runnable(block):
                continue
            code = block.code.replace("127.0.0.1:8080", f"127.0.0.1:{server.port}")
            if block.lang in SHELL:
                command = ["bash", "-e", "-o", "pipefail", "-c", code]
            else:
                command = ["python", "-c", code]
            try:
                done = subprocess.run(
                    command,
                    cwd=workdir,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=BLOCK_SECONDS,
                )
            except subprocess.TimeoutExpired as exc:
                raise AssertionError(f"{block.where}: running after {exc.timeout} s") from None
            assert done.returncode == 0, (
                f"{block.where}: exit status {done.returncode}\n"
                f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
            )
            missing = claims_met(block.code, done.stdout)
            assert missing is None, (
                f"{block.where}: the block did not print {missing!r}\n--- stdout\n{done.stdout}"
            )
            ran.append(block)
    finally:
        code = server.stop()
    assert code == 0, f"{page.name}: the server exited with status {code}"
    return ran


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shell_and_python_block_of_the_page_runs_in_order(page, tmp_path):
    ran = run_page(page, tmp_path)
    if page == ROOT / "README.md":
        assert len(ran) >= 8  # the quick start, curl, client, CLI and example blocks


def test_the_readme_marks_what_it_does_not_run():
    """Every code block is a shell or Python block that runs, or says why not (or is data)."""
    for block in blocks(ROOT / "README.md"):
        assert block.lang in SHELL | PYTHON | {"json", "text"}, f"{block.where}: {block.lang!r}"
    skipped = [b for b in blocks(ROOT / "README.md") if b.mark == "skip"]
    assert any("pip install -e ." in b.code for b in skipped)


def test_a_claim_is_checked_in_order_with_wildcards():
    code = 'curl x\n# -> {"a": 1, ...}\n# -> "b": 2\n'
    assert claims_met(code, '{"a":1,"z":0}{"b":2}') is None
    assert claims_met(code, '{"b":2}{"a":1,"z":0}') == '"b": 2'
    assert claims_met("# -> off by one: 1\n", "off by one: 2") == "off by one: 1"


LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_stay_inside_the_repository_and_resolve(page):
    """A reader of the repository has only the repository: every relative link names a file
    in it that exists (anchors aside), and none climbs out of it."""
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        assert path.is_relative_to(ROOT), f"{page.name}: {target} is outside the repository"
        assert path.exists(), f"{page.name}: {target} does not exist"
