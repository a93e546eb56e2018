"""`python -m workers.main --providers a,b`: one worker process (the pool starts these)."""

from __future__ import annotations

import argparse
import os

from shared.config import load_settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="sluice-worker-process")
    parser.add_argument("--providers", required=True, help="comma-separated provider ids")
    parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    args = parser.parse_args(argv)
    settings = load_settings()
    url = settings.redis_url or os.environ.get("REDIS_URL")
    if not url:
        raise SystemExit("sluice worker: set REDIS_URL (or SLUICE_REDIS_URL)")
    from workers.process import serve

    serve([p for p in args.providers.split(",") if p], url, settings, burst=args.burst)


if __name__ == "__main__":
    main()
