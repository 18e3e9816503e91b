"""The `ultra-gateway` command: `serve`, `check-config`, `healthcheck`, `eval` (gateway/eval) and
`import-litellm`.

A bad config is reported as `path: message` lines and exit status 2, before any port is bound. The port is
`--port`, else `$ULTRA_PORT`, else the config's `server.port`; `healthcheck` resolves it the same way, so a
container's health check follows the port the server really binds.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence

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
    serve.add_argument(
        "--port", type=int, help="bind port (default: $ULTRA_PORT, else server.port, 8000; 0 picks a free port)"
    )
    serve.add_argument("--workers", type=int, help="worker processes (default: server.workers, 1)")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    check = commands.add_parser("check-config", help="validate a config file; exit 0 if valid, 2 if not")
    check.add_argument("file")
    health = commands.add_parser("healthcheck", help="exit 0 if the local gateway answers its health route")
    health.add_argument("--config", help="config whose server.port to probe (default: $ULTRA_CONFIG)")
    health.add_argument("--port", type=int, help="port to probe (default: $ULTRA_PORT, else server.port)")
    health.add_argument("--path", default="/health/live", help="route to probe (default: /health/live)")
    health.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for the answer (default: 2)")
    eval_command.add_parser(commands)
    convert = commands.add_parser(
        "import-litellm", help="print a LiteLLM proxy config's model_list as providers and model_groups YAML"
    )
    convert.add_argument("file")
    return parser


def _env_port(env: Mapping[str, str]) -> int | None:
    value = env.get("ULTRA_PORT", "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) > 65535:
        raise ValueError(f"ULTRA_PORT must be a port number, got {value!r}")
    return int(value)


def resolve_port(cli_port: int | None, settings: Settings | None, env: Mapping[str, str] | None = None) -> int:
    """The port `serve` binds: `--port`, else `$ULTRA_PORT`, else `server.port` (needs `settings` then)."""
    if cli_port is not None:
        return cli_port
    from_env = _env_port(os.environ if env is None else env)
    if from_env is not None:
        return from_env
    assert settings is not None
    return settings.server.port


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
    from gateway.http.server import GatewayHttpProtocol, configure_server

    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    server = settings.server
    host = args.host or server.host
    try:
        port = resolve_port(args.port, settings)
    except ValueError as exc:
        print(f"ultra-gateway: {exc}", file=sys.stderr)
        return 2
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
        "http": GatewayHttpProtocol,  # uvicorn's httptools protocol plus a header-read timeout (http/server.py)
    }
    configure_server(server.header_timeout_s, server.shutdown_grace_s)
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


def _healthcheck(args: argparse.Namespace) -> int:
    """Probe 127.0.0.1 on the port `serve` would bind; the config is read only when no port is given."""
    try:
        port = resolve_port(args.port, None) if args.port is not None or _env_port(os.environ) is not None else None
    except ValueError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    if port is None:
        settings = _load(args.config)
        if settings is None:
            return 1
        port = settings.server.port
    url = f"http://127.0.0.1:{port}{args.path}"
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (OSError, TimeoutError) as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"unhealthy: {url} answered {status}", file=sys.stderr)
        return 1
    return 0


def _import_litellm(args: argparse.Namespace) -> int:
    """The converted config on stdout (checked to load), notes on stderr; exit 2 if the file is unusable."""
    import yaml

    from gateway.config import parse_settings
    from gateway.litellm_import import convert

    try:
        with open(args.file, encoding="utf-8") as handle:
            source = yaml.safe_load(handle)
        config, notes = convert(source if isinstance(source, dict) else {})
    except (OSError, yaml.YAMLError, ValueError) as exc:
        print(f"{args.file}: cannot convert: {exc}", file=sys.stderr)
        return 2
    text = f"# converted from {os.path.basename(args.file)} by ultra-gateway import-litellm\n" + yaml.safe_dump(
        config, sort_keys=False, width=120
    )
    try:
        parse_settings(text, source="converted", env={})
    except ConfigError as exc:
        print(f"{args.file}: the converted config does not load:", file=sys.stderr)
        for line in exc.errors:
            print(f"  {line}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "import-litellm":
        return _import_litellm(args)
    if args.command == "serve":
        return _serve(args)
    if args.command == "healthcheck":
        return _healthcheck(args)
    if args.command == "eval":
        return eval_command.run(args)
    return _check(args)


if __name__ == "__main__":
    sys.exit(main())
