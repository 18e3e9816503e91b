"""The `ultra-gateway` command: `serve`, `check-config`, `healthcheck`, `keys` (the admin API's client),
`eval` (gateway/eval) and `import-litellm`.

A bad config is reported as `path: message` lines and exit status 2, before any port is bound. The port is
`--port`, else `$ULTRA_PORT`, else the config's `server.port`; `healthcheck` resolves it the same way, so a
container's health check follows the port the server really binds.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
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
    serve.add_argument(
        "--log-format", default="text", choices=["text", "json"], help="the non-access log lines (default: text)"
    )
    serve.add_argument(
        "--access-log",
        default="stdout",
        choices=["stdout", "stderr", "off"],
        help="where the JSON access lines go (default: stdout; everything else goes to stderr)",
    )
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
    keys = commands.add_parser("keys", help="create, list, revoke or rotate runtime API keys (the admin API)")
    keys.add_argument("action", choices=["create", "list", "revoke", "rotate"])
    keys.add_argument("name", nargs="?", help="the key's name (create, revoke, rotate)")
    keys.add_argument("--url", help="the gateway (default: http://127.0.0.1:$ULTRA_PORT, else port 8000)")
    keys.add_argument(
        "--admin-key-env", default="ULTRA_ADMIN_KEY", help="variable holding the admin key (default: ULTRA_ADMIN_KEY)"
    )
    keys.add_argument("--tenant")
    keys.add_argument("--models", help="comma-separated model globs (default: *)")
    keys.add_argument("--rpm", type=int)
    keys.add_argument("--tpm", type=int)
    keys.add_argument("--budget-usd", type=float)
    keys.add_argument("--budget-period", choices=["day", "month", "rolling_24h"], default="month")
    keys.add_argument("--expires-in-days", type=float)
    keys.add_argument("--timeout", type=float, default=10.0)
    return parser


def _keys(args: argparse.Namespace) -> int:
    """The admin API over HTTP: prints the answer as JSON (a new key's secret is in it, once)."""
    import json
    import time

    admin = os.environ.get(args.admin_key_env, "")
    if not admin:
        print(f"ultra-gateway keys: environment variable {args.admin_key_env} is not set", file=sys.stderr)
        return 2
    if args.action != "list" and not args.name:
        print(f"ultra-gateway keys {args.action}: give the key's name", file=sys.stderr)
        return 2
    try:
        base = (args.url or f"http://127.0.0.1:{_env_port(os.environ) or 8000}").rstrip("/")
    except ValueError as exc:
        print(f"ultra-gateway keys: {exc}", file=sys.stderr)
        return 2
    method, path, body = "GET", "/admin/keys", None
    spec: dict[str, object]
    if args.action == "create":
        spec = {"name": args.name}
        for field in ("tenant", "rpm", "tpm"):
            if getattr(args, field) is not None:
                spec[field] = getattr(args, field)
        if args.models:
            spec["models"] = [m.strip() for m in args.models.split(",") if m.strip()]
        if args.budget_usd is not None:
            spec["budget"] = {"usd": args.budget_usd, "period": args.budget_period}
        if args.expires_in_days is not None:
            spec["expires_at"] = time.time() + args.expires_in_days * 86_400
        method, body = "POST", spec
    elif args.action == "revoke":
        method, path = "DELETE", f"/admin/keys/{args.name}"
    elif args.action == "rotate":
        method, path = "POST", f"/admin/keys/{args.name}/rotate"
    from gateway.http.admin_client import AdminCallFailed, call_admin

    try:
        answer = call_admin(base, method, path, admin, body, timeout_s=args.timeout)
    except AdminCallFailed as exc:
        print(f"ultra-gateway keys {args.action}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(answer, indent=2))
    return 0


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
    from gateway.telemetry.logs import LogOptions, configure_logging

    options = LogOptions(args.log_level, args.log_format, args.access_log)
    os.environ.update(options.to_env())  # this process's access writer and every worker read them
    configure_logging(options)
    server = settings.server
    host = args.host or server.host
    try:
        port = resolve_port(args.port, settings)
    except ValueError as exc:
        print(f"ultra-gateway: {exc}", file=sys.stderr)
        return 2
    workers = args.workers or server.workers
    on_redis = settings.rate_limits.backend == "redis"
    if workers > 1 and not on_redis and settings.auth.admin_key_env is not None:
        print(
            "ultra-gateway: runtime keys (auth.admin_key_env) with --workers > 1 need Redis (rate_limits.backend: "
            "redis, or REDIS_URL): in memory, a key created through one worker would be unknown to the others",
            file=sys.stderr,
        )
        return 2
    budgets = any(k.budget for k in settings.auth.keys) or any(t.budget for t in settings.auth.tenants.values())
    if workers > 1 and not on_redis and budgets:
        log.warning("budgets with --workers %d and no Redis: each worker keeps its own spend totals", workers)
    if not settings.auth.keys and settings.auth.admin_key_env is None:
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
    if args.log_format == "json":
        common["log_config"] = None  # uvicorn's lines go through the root logger's JSON formatter
    configure_server(server.header_timeout_s, server.shutdown_grace_s)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the serving loop installs the reload handler
    if workers > 1:
        # Every worker process builds its own app from the same, already validated file, and reloads it on the
        # SIGHUP the supervisor forwards.
        if args.config:
            os.environ["ULTRA_CONFIG"] = os.path.abspath(args.config)
        import shutil
        import tempfile

        from gateway.http.supervisor import run_workers

        # Each worker's metrics snapshot goes here, so any worker's /metrics answers for all of them.
        shared = tempfile.mkdtemp(prefix="ultra-metrics-")
        os.environ["ULTRA_METRICS_DIR"] = shared
        try:
            run_workers(workers, common)
        finally:
            shutil.rmtree(shared, ignore_errors=True)
    else:
        app = create_app(settings, config_path=args.config, serving=True)
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
    if args.command == "keys":
        return _keys(args)
    return _check(args)


if __name__ == "__main__":
    sys.exit(main())
