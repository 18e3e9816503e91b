"""The shape of the code, checked: header names live in the HTTP layer only, and the registries' recipes work.

Outside `gateway/http` (which renders responses), `gateway/providers` (which speak each upstream's own HTTP
API) and the span exporter (which speaks OTLP/HTTP to a collector), no module may spell an HTTP header name:
the pipeline hands typed values to the edge, which renders them.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest

from gateway.builder import build_gateway
from gateway.config import ConfigError, parse_settings
from gateway.core.provider import CallOptions
from gateway.core.types import ChatRequest, ChatResponse, parse_chat_request
from gateway.pipeline import Caller
from gateway.providers.mock import MockModel, MockProvider
from gateway.registry import DIALECTS
from gateway.settings import ProviderSettings

ROOT = Path(__file__).resolve().parents[2]
ALLOWED = ("gateway/http/", "gateway/providers/", "gateway/telemetry/_export.py")
HEADER = re.compile(
    r"^(x-[a-z0-9-]+|retry-after(-ms)?|cache-control|authorization|content-(type|length)|traceparent"
    r"|tracestate)$",
    re.IGNORECASE,
)


def _header_literals(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            if HEADER.match(text) or text.lower().startswith("x-ultra-"):
                found.append((node.lineno, text))
    return found


def test_no_module_outside_the_http_layer_names_an_http_header() -> None:
    offenders = []
    for package in ("gateway", "strategies"):
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if relative.startswith(ALLOWED):
                continue
            offenders += [f"{relative}:{line}: {text!r}" for line, text in _header_literals(path)]
    assert offenders == []


def test_the_header_check_sees_a_header_name() -> None:
    """The check above can fail: it finds the names the HTTP layer does render."""
    names = {text for _, text in _header_literals(ROOT / "gateway/http/render.py")}
    assert {"x-ultra-cache", "x-ultra-strategy", "retry-after"} <= names


class _Shouting(MockProvider):
    """A new provider kind, as the recipe adds one: the mock adapter's answer in capitals."""

    kind = "shouting"
    system = "ultra_gateway.shouting"

    async def complete(self, request: ChatRequest, *, model: str, options: CallOptions) -> ChatResponse:
        response = await super().complete(request, model=model, options=options)
        message = response.data["choices"][0]["message"]
        message["content"] = message["content"].upper()
        return response


def _shouting(config: ProviderSettings, api_key: str | None) -> Any:
    return _Shouting(config.name, {m.id: MockModel(reply="hello from {model}") for m in config.models})


CONFIG = "providers: [{name: loud, kind: shouting, models: [{id: m1}]}]\ncache: {enabled: false}\n"


async def test_a_provider_kind_is_one_factory_and_one_registry_line(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError) as caught:  # before registration the kind is refused, with its path
        parse_settings(CONFIG, env={})
    assert caught.value.errors[0].startswith("providers[0].kind: unknown provider kind 'shouting'")
    monkeypatch.setitem(DIALECTS, "shouting", _shouting)  # the one line the recipe adds
    gateway = build_gateway(parse_settings(CONFIG, env={}), env={})
    await gateway.start()
    try:
        chat = parse_chat_request({"model": "loud/m1", "messages": [{"role": "user", "content": "hi"}]})
        answer = await gateway.pipeline.complete(chat, Caller("req-recipe"))
    finally:
        await gateway.aclose()
    assert answer.body["choices"][0]["message"]["content"] == "HELLO FROM M1"
    assert answer.meta.providers == ["loud/m1"]
