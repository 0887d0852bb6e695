"""``python -m app`` (what ``make run`` runs): start Redis if needed, then serve.

With ``TOOLBRIDGE_REDIS_URL`` unset, a real redis-server is started as a child process with its
data under ``TOOLBRIDGE_DATA_DIR`` (``.data/``), and stopped on exit.
"""

from __future__ import annotations

import logging
import os
import signal
import sys

import uvicorn

from app.config import Settings
from app.logs import configure_logging
from app.store.embedded import start_embedded_redis


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level)
    log = logging.getLogger("toolbridge")
    embedded = None
    if not settings.redis_url:
        embedded = start_embedded_redis(settings.data_dir / "redis")
        os.environ["TOOLBRIDGE_REDIS_URL"] = embedded.url
        log.warning(
            "TOOLBRIDGE_REDIS_URL is not set: started an embedded redis-server at %s "
            "(data in %s). Set TOOLBRIDGE_REDIS_URL to use your own Redis.",
            embedded.url,
            settings.data_dir / "redis",
        )
    # uvicorn drains in-flight requests on SIGTERM, then re-raises the signal to the handler it
    # found: make that a normal exit, so the embedded Redis below is stopped, not orphaned.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        uvicorn.run(
            "app.main:create_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=int(os.environ.get("TOOLBRIDGE_WORKERS", "1")),
            log_level=settings.log_level.lower(),
            timeout_graceful_shutdown=30,
            log_config=None,  # keep the JSON logging configured above
            access_log=False,  # the request-id middleware logs each request instead
        )
    finally:
        if embedded is not None:
            embedded.stop()


if __name__ == "__main__":
    main()
