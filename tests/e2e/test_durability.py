"""Nothing lost in the default set-up: the embedded Redis survives crashes and never outlives
toolbridge; ``make run`` honours ``.env`` and stops with ``make``; a broken config stops start-up.

Real processes: ``python -m app`` (and ``make run``) with the embedded redis-server, killed the
ways a laptop kills them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.store.embedded import OWNER_FILE, free_port
from tests.fixtures.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
KEY = "sk-durable"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by a parent that is still there) is not alive.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


class Service:
    """``python -m app`` in its own process group, with a priced model and a budgeted key."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        config = {
            "model_list": [
                {
                    "model_name": "priced",
                    "litellm_params": {
                        "model": "openai/scripted",
                        "api_base": f"{self.url}/demo/model/v1",
                        "api_key": "demo",
                    },
                    "model_info": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6},
                }
            ],
            "api_keys": [{"id": "durable", "key": KEY, "budget": {"total_usd": 10}}],
        }
        (workdir / "toolbridge.yaml").write_text(json.dumps(config))  # JSON is YAML

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOOLBRIDGE_")}
        env.update(
            TOOLBRIDGE_PORT=str(self.port),
            TOOLBRIDGE_DATA_DIR=str(self.workdir / "data"),
            TOOLBRIDGE_CONFIG_FILE=str(self.workdir / "toolbridge.yaml"),
            TOOLBRIDGE_DEMO="on",
        )
        return env

    def start(self) -> Service:
        log = (self.workdir / "toolbridge.log").open("a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app"],
            env=self.env(),
            cwd=self.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as a terminal would give it
        )
        wait_until(self.ready, 90, "toolbridge ready")
        return self

    def ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            pytest.fail((self.workdir / "toolbridge.log").read_text())
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def redis_pid(self) -> int:
        return int(json.loads((self.workdir / "data" / "redis" / OWNER_FILE).read_text())["pid"])

    def call(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        headers = {"Authorization": f"Bearer {KEY}"}
        return httpx.request(method, f"{self.url}{path}", headers=headers, timeout=60, **kwargs)

    def spent(self) -> float:
        return float(self.call("GET", "/v1/budget").json()["scopes"][0]["spent_usd"])


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    service = Service(tmp_path)
    yield service
    if service.process is not None and service.process.poll() is None:
        os.killpg(service.process.pid, signal.SIGKILL)
        service.process.wait()


def write_state(service: Service) -> tuple[float, str]:
    """Spend and a stored response; waits past the append-only file's one-second fsync."""
    chat = {"model": "priced", "messages": [{"role": "user", "content": "say hello"}]}
    assert service.call("POST", "/v1/chat/completions", json=chat).status_code == 200
    stored = service.call("POST", "/v1/responses", json={"model": "priced", "input": "hi"})
    assert stored.status_code == 200
    spent = service.spent()
    assert spent > 0
    time.sleep(1.5)
    return spent, stored.json()["id"]


def assert_state_kept(service: Service, spent: float, response_id: str) -> None:
    assert service.spent() == pytest.approx(spent)
    assert service.call("GET", f"/v1/responses/{response_id}").status_code == 200


def test_a_crash_of_the_whole_process_group_loses_nothing_written(service: Service) -> None:
    service.start()
    spent, response_id = write_state(service)
    assert service.process is not None
    redis_pid = service.redis_pid()
    os.killpg(service.process.pid, signal.SIGKILL)  # toolbridge and redis-server alike
    service.process.wait()
    wait_until(lambda: not alive(redis_pid), 10, "redis-server gone")
    service.start()
    assert_state_kept(service, spent, response_id)


def test_redis_never_outlives_a_killed_toolbridge(service: Service) -> None:
    service.start()
    spent, response_id = write_state(service)
    assert service.process is not None
    redis_pid = service.redis_pid()
    service.process.kill()  # the Python process only
    service.process.wait()
    wait_until(lambda: not alive(redis_pid), 5, "redis-server exits with its parent")
    service.start()
    assert service.redis_pid() != redis_pid
    assert_state_kept(service, spent, response_id)


def test_a_clean_stop_saves_and_a_restart_reuses_the_data(service: Service) -> None:
    service.start()
    spent, response_id = write_state(service)
    assert service.process is not None
    service.process.send_signal(signal.SIGTERM)
    assert service.process.wait(timeout=30) == 0
    assert list((service.workdir / "data" / "redis").glob("*.rdb")), "SHUTDOWN SAVE wrote a dump"
    service.start()
    assert_state_kept(service, spent, response_id)


def test_make_run_stops_when_make_gets_sigterm_and_honours_dotenv(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOOLBRIDGE_", "MAKE"))}
    env.update(TOOLBRIDGE_PORT=str(port), TOOLBRIDGE_DATA_DIR=str(tmp_path / "data"))
    # A checkout of our own, so its .env is ours: the Makefile, what it installs from, the venv.
    installed = (REPO / ".venv" / ".installed").stat().st_mtime
    for name in ("Makefile", "pyproject.toml", "tests/conformance/package.json"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, tmp_path / name)
        os.utime(tmp_path / name, (installed - 1, installed - 1))  # the venv is current
    (tmp_path / ".venv").symlink_to(REPO / ".venv")
    # .env says closed: make run's open-mode default must not override it.
    (tmp_path / ".env").write_text("TOOLBRIDGE_ALLOW_ANONYMOUS=false\nTOOLBRIDGE_WORKERS=2\n")
    make = subprocess.Popen(
        ["make", "-s", "run"],
        cwd=tmp_path,
        env=env,
        stdout=(tmp_path / "log").open("w"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert make.poll() is None, (tmp_path / "log").read_text()
        try:
            return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(ready, 90, "make run ready")
        chat = {"model": "toolbridge-demo", "messages": [{"role": "user", "content": "hi"}]}
        assert httpx.post(f"{url}/v1/chat/completions", json=chat, timeout=30).status_code == 401
        server = int(subprocess.check_output(["pgrep", "-P", str(make.pid)]).split()[0])
        workers = subprocess.check_output(["pgrep", "-P", str(server)]).split()
        assert len(workers) >= 3  # redis-server and two uvicorn workers (TOOLBRIDGE_WORKERS)
        redis_pid = int(json.loads((tmp_path / "data" / "redis" / OWNER_FILE).read_text())["pid"])
        make.send_signal(signal.SIGTERM)
        make.wait(timeout=30)
        wait_until(lambda: not alive(server), 30, "python -m app exits")
        wait_until(lambda: not alive(redis_pid), 10, "redis-server exits")
    finally:
        if make.poll() is None:
            make.kill()


def test_a_config_file_that_is_missing_or_broken_stops_start_up(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("model_list: [\n  oops")
    for name, expected in (("missing.yaml", "no such file"), ("broken.yaml", "does not parse")):
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOOLBRIDGE_")}
        env["TOOLBRIDGE_CONFIG_FILE"] = str(tmp_path / name)
        done = subprocess.run(
            [sys.executable, "-m", "app"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2
        assert f"configuration error: TOOLBRIDGE_CONFIG_FILE={tmp_path / name}" in done.stderr
        assert expected in done.stderr
