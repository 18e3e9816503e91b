"""The `ultra-gateway` command: `serve`, `check-config` and `eval` (gateway/eval).

A bad config is reported as `path: message` lines and exit status 2, before any port is bound.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from gateway import __version__
from gateway.config import ConfigError, aliases_of, load_settings
from gateway.eval import command as eval_command
from gateway.settings import Settings

__all__ = ["main"]

log = logging.getLogger("ultra_gateway")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ultra-gateway", description="OpenAI-compatible LLM gateway.")
    parser.add_argument("--version", action="version", version=f"ultra-gateway {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", help="config file (default: $ULTRA_CONFIG, else the built-in mock fleet)")
    serve.add_argument("--host", help="bind address (default: server.host, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="bind port (default: server.port, 8000; 0 picks a free port)")
    serve.add_argument("--workers", type=int, help="worker processes (default: server.workers, 1)")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    check = commands.add_parser("check-config", help="validate a config file; exit 0 if valid, 2 if not")
    check.add_argument("file")
    eval_command.add_parser(commands)
    return parser


def _load(path: str | None) -> Settings | None:
    try:
        return load_settings(path)
    except ConfigError as exc:
        print(f"{exc.source}: invalid configuration", file=sys.stderr)
        for line in exc.errors:
            print(f"  {line}", file=sys.stderr)
        return None


def _serve(args: argparse.Namespace) -> int:
    settings = _load(args.config)
    if settings is None:
        return 2
    import uvicorn

    from gateway.http.app import create_app, prepare_process

    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    server = settings.server
    host = args.host or server.host
    port = server.port if args.port is None else args.port
    workers = args.workers or server.workers
    if not settings.auth.keys:
        log.warning("NO API KEYS CONFIGURED: this gateway is open to anyone who can reach %s:%s", host, port)
    common = {
        "host": host,
        "port": port,
        "log_level": args.log_level,
        "access_log": False,
        "timeout_graceful_shutdown": server.shutdown_grace_s,
        "lifespan": "on",
        "server_header": False,
    }
    if workers > 1:
        # Every worker process builds its own app from the same, already validated file.
        if args.config:
            os.environ["ULTRA_CONFIG"] = os.path.abspath(args.config)
        uvicorn.run("gateway.http.app:app_from_env", factory=True, workers=workers, **common)
    else:
        app = create_app(settings)
        prepare_process()
        uvicorn.run(app, **common)
    return 0


def _check(args: argparse.Namespace) -> int:
    settings = _load(args.file)
    if settings is None:
        return 2
    print(f"{args.file}: ok ({len(settings.deployment_names)} models, {len(aliases_of(settings))} aliases)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "eval":
        return eval_command.run(args)
    return _check(args)


if __name__ == "__main__":
    sys.exit(main())
