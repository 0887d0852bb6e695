"""Every example in the README and in ``docs/`` is run, so none goes stale.

Each fenced code block is one of:

- ``sh``/``python``: run against a toolbridge started as ``make run`` starts it (the demo, open
  mode), its URL put where the example says ``http://127.0.0.1:8000``. It must exit 0 (or the
  code its marker states), a ``curl`` must answer without an error, and a ``print(...)  # x``
  line must print exactly ``x``.
- ``yaml`` naming ``model_list``, ``mcp_servers`` or ``api_keys``: a configuration, checked
  with ``python -m app --check`` (every variable it reads set): no problem may be found.
- ``json``: parsed.
- anything a test cannot run here (a cluster, ``make test`` itself) says so in a marker on the
  line before it, ``<!-- example: <why, and what covers it> -->``; a test file it names must
  exist. A block with no language is a figure, not an example.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.store.embedded import free_port
from tests.conftest import CLUSTER
from tests.deploy.test_replicas import wait_ready

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(
    r"(?:^<!-- example: (?P<marker>.+?) -->\n)?^```(?P<lang>\w*)[^\n]*\n(?P<code>.*?)^```",
    re.S | re.M,
)
LOCAL = "http://127.0.0.1:8000"
CONFIG_KEYS = re.compile(r"^(model_list|mcp_servers|api_keys):", re.M)


@dataclass(frozen=True)
class Example:
    page: str
    line: int
    lang: str
    code: str
    marker: str | None

    def __str__(self) -> str:
        return f"{self.page}:{self.line}"


def examples() -> list[Example]:
    found = []
    for page in PAGES:
        text = page.read_text()
        for match in BLOCK.finditer(text):
            if not match["lang"]:
                continue  # a figure
            line = text.count("\n", 0, match.start("code"))
            name = str(page.relative_to(ROOT))
            found.append(Example(name, line, match["lang"], match["code"], match["marker"]))
    return found


EXAMPLES = examples()


def _exit_code(marker: str | None) -> int | None:
    """The exit code a marker states (``exits N``); None when it says the block is not run."""
    if marker is None:
        return 0
    stated = re.fullmatch(r"exits (\d+)\b.*", marker)
    return int(stated[1]) if stated else None


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[str]:
    """toolbridge as ``make run`` serves it (``--anonymous-by-default``, the demo)."""
    workdir = tmp_path_factory.mktemp("demo")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOOLBRIDGE_")}
    env.pop("OPENAI_API_KEY", None)
    env.update(
        TOOLBRIDGE_PORT=str(port),
        TOOLBRIDGE_REDIS_URL=redis_url,
        TOOLBRIDGE_REDIS_CLUSTER=str(CLUSTER).lower(),
        TOOLBRIDGE_REDIS_PREFIX=f"tb-docs-{uuid.uuid4().hex[:6]}:",
        TOOLBRIDGE_LOG_LEVEL="WARNING",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "--anonymous-by-default"],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def _run(args: list[str], code: str, demo: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    bin_dir = str(Path(sys.executable).parent)  # `python` in an example is this venv's
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOOLBRIDGE_")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", PYTHONPATH=str(ROOT))
    return subprocess.run(
        [*args, code.replace(LOCAL, demo)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _expected_prints(code: str) -> list[str]:
    """What each ``print(...)  # x`` line must print, in order."""
    return [m[1].strip() for m in re.finditer(r"^print\(.*\)\s+# (.*)$", code, re.M)]


@pytest.mark.parametrize("example", EXAMPLES, ids=str)
def test_the_example_runs(example: Example, demo: str, tmp_path: Path) -> None:
    expected_code = _exit_code(example.marker)
    if expected_code is None:
        assert example.marker and len(example.marker) > 10, "a marker says why it is not run"
        for path in re.findall(r"tests/[\w/]+\.py", example.marker):
            assert (ROOT / path).exists(), f"the marker names {path}, which does not exist"
        return
    match example.lang:
        case "sh":
            done = _run(["bash", "-euo", "pipefail", "-c"], example.code, demo, ROOT)
            assert done.returncode == expected_code, done.stdout + done.stderr
            if example.code.lstrip().startswith("curl"):
                answer = json.loads(done.stdout)
                assert "error" not in answer, answer
                assert answer["choices"][0]["message"]["content"] == "done: demo__add=5.0"
        case "python":
            done = _run([sys.executable, "-c"], example.code, demo, tmp_path)
            assert done.returncode == expected_code, done.stderr[-3000:]
            printed = done.stdout.splitlines()
            for wanted in _expected_prints(example.code):
                assert wanted in printed, (wanted, printed)
        case "yaml" if CONFIG_KEYS.search(example.code):
            _check_configuration(example.code, tmp_path)
        case "json":
            json.loads(example.code)
        case _:
            pytest.fail(f"{example}: a {example.lang!r} block with no marker saying why not run")


def _check_configuration(text: str, tmp_path: Path) -> None:
    path = tmp_path / "toolbridge.yaml"
    path.write_text(text)
    wanted = set(re.findall(r"os\.environ/(\w+)", text))
    wanted |= set(re.findall(r"\b([A-Z][A-Z0-9_]+_(?:KEY|TOKEN|SECRET))\b", text))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOOLBRIDGE_")}
    env.update({name: f"set-for-the-check-{name}" for name in wanted})
    bin_dir = str(Path(sys.executable).parent)
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=str(ROOT),
        TOOLBRIDGE_CONFIG_FILE=str(path),
        TOOLBRIDGE_ALLOW_ANONYMOUS="true",  # keys are not every example's subject
    )
    done = subprocess.run(
        [sys.executable, "-m", "app", "--check"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_page_with_examples_is_read() -> None:
    pages = {example.page for example in EXAMPLES}
    assert {"README.md", "docs/getting-started.md", "docs/responses.md"} <= pages
