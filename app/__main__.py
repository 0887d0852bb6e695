"""``python -m app`` (what ``make run`` runs): start Redis if needed, then serve.

With ``TOOLBRIDGE_REDIS_URL`` unset, a real redis-server is started as a child process with its
data under ``TOOLBRIDGE_DATA_DIR`` (``.data/``), durable, and stopped (saved) on exit.

``--anonymous-by-default`` (``make run``) makes open mode the default for a laptop: it applies
only when neither the environment nor ``.env`` sets ``TOOLBRIDGE_ALLOW_ANONYMOUS``.
"""

from __future__ import annotations

import gc

# Start-up imports make about 200,000 objects and almost no garbage: with the collector on,
# its passes over them were 10-15 % of the time to ready. It is back on once the app is
# imported (``_imported``).
gc.disable()

import argparse
import importlib
import logging
import os
import signal
import sys

import uvicorn
from dotenv import dotenv_values
from pydantic import ValidationError

from app.config import ConfigError, Settings
from app.http_writes import GatheredWritesProtocol
from app.logs import configure_logging
from app.open_files import raise_open_files_limit
from app.store.embedded import redis_server_binary, start_embedded_redis

_ANONYMOUS = "TOOLBRIDGE_ALLOW_ANONYMOUS"


def _load_settings(anonymous_by_default: bool) -> Settings:
    """The settings, or a clear message and exit code 2 when the configuration is broken."""
    unset = _ANONYMOUS not in os.environ and _ANONYMOUS not in dotenv_values(".env")
    if anonymous_by_default and unset:
        os.environ[_ANONYMOUS] = "true"  # inherited by uvicorn's worker processes too
    try:
        return Settings()
    except (ConfigError, ValidationError) as exc:
        print(f"toolbridge: configuration error: {exc}", file=sys.stderr)
        sys.exit(2)


def _imported() -> None:
    """Import the app (uvicorn then finds it loaded), then turn the collector back on. While
    it was off, everything the imports made stayed in the youngest generation: frozen first,
    or the first two passes would scan all of it (0.2 s). The lifespan freezes the rest."""
    importlib.import_module("app.main")
    gc.freeze()
    gc.enable()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m app", description="Serve toolbridge.")
    parser.add_argument(
        "--anonymous-by-default",
        action="store_true",
        help="open mode unless TOOLBRIDGE_ALLOW_ANONYMOUS is set (environment or .env)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="check the configuration (file and environment) without serving: print what it "
        "found, exit 1 on a problem, 2 when it does not load",
    )
    args = parser.parse_args(argv)
    settings = _load_settings(args.anonymous_by_default)
    if args.check:
        from app.check import check  # only here: serving imports it with the app

        findings = check(settings)
        print(findings.report())
        sys.exit(1 if findings.problems else 0)
    configure_logging(settings.log_level)
    raise_open_files_limit()  # before uvicorn's workers fork: they inherit it
    log = logging.getLogger("toolbridge")
    embedded = None
    if not settings.redis_url:
        embedded = start_embedded_redis(settings.data_dir / "redis")
        os.environ["TOOLBRIDGE_REDIS_URL"] = embedded.url
        log.warning(
            "TOOLBRIDGE_REDIS_URL is not set: started an embedded redis-server at %s "
            "(%s; data and its log in %s). Set TOOLBRIDGE_REDIS_URL to use your own Redis.",
            embedded.url,
            redis_server_binary(),
            settings.data_dir / "redis",
        )
    # uvicorn drains in-flight requests on SIGTERM, then re-raises the signal to the handler it
    # found: make that a normal exit, so the embedded Redis below is stopped, not orphaned.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    _imported()
    try:
        uvicorn.run(
            "app.main:create_app",
            factory=True,
            http=GatheredWritesProtocol,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_level=settings.log_level.lower(),
            timeout_graceful_shutdown=30,
            timeout_keep_alive=settings.http_keepalive_s,
            log_config=None,  # keep the JSON logging configured above
            access_log=False,  # the request-id middleware logs each request instead
        )
    finally:
        if embedded is not None:
            embedded.stop()


if __name__ == "__main__":
    main()
