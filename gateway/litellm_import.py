"""`ultra-gateway import-litellm FILE`: a LiteLLM proxy config's `model_list` as this gateway's `providers` and
`model_groups`.

Each `litellm_params.model` (`PREFIX/MODEL`) becomes a deployment of a provider: OpenAI-compatible prefixes
(openai, azure, groq, together_ai, mistral, deepseek, ...) become kind `openai` with their API root, `anthropic`
and `gemini` their own kinds. Deployments sharing a prefix, endpoint and key share one provider. Every
`model_name` becomes a model group over its deployments (LiteLLM's load-balancing groups), weighted by
`litellm_params.weight`, routed by `router_settings.routing_strategy`. Keys are named, never copied: an
`os.environ/NAME` key becomes `api_key_env: NAME`; a literal key becomes an environment variable to set, and a
note says so. What has no equivalent here is listed in the notes rather than dropped silently.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

__all__ = ["convert"]

_OPENAI_COMPATIBLE = {
    "openai": "https://api.openai.com/v1",
    "text-completion-openai": "https://api.openai.com/v1",
    "groq": "https://api.groq.com/openai/v1",
    "together_ai": "https://api.together.xyz/v1",
    "mistral": "https://api.mistral.ai/v1",
    "deepseek": "https://api.deepseek.com/v1",
    "openrouter": "https://openrouter.ai/api/v1",
    "fireworks_ai": "https://api.fireworks.ai/inference/v1",
    "xai": "https://api.x.ai/v1",
    "perplexity": "https://api.perplexity.ai",
    "deepinfra": "https://api.deepinfra.com/v1/openai",
    "cerebras": "https://api.cerebras.ai/v1",
    "azure": "",  # the resource's api_base + /openai/v1 (Azure's OpenAI-compatible v1 API)
    "hosted_vllm": "",  # api_base required
    "openai_compatible": "",
}
_PRICES = (("input_cost_per_token", "input_cost_per_mtok"), ("output_cost_per_token", "output_cost_per_mtok"))
_NATIVE = {"anthropic": "anthropic", "gemini": "gemini"}
_ROUTING = {
    "simple-shuffle": "weighted",
    "least-busy": "least_in_flight",
    "latency-based-routing": "lowest_latency",
}


def _env_name(value: Any) -> str | None:
    if isinstance(value, str) and value.startswith("os.environ/"):
        return value.removeprefix("os.environ/")
    return None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "provider"


def _per_mtok(params: Mapping[str, Any], info: Mapping[str, Any], field: str) -> float | None:
    value = params.get(field, info.get(field))
    return round(float(value) * 1_000_000, 6) if isinstance(value, int | float) else None


def convert(litellm: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The gateway config (providers, model_groups) for a LiteLLM proxy config, and notes for the operator."""
    notes: list[str] = []
    entries = litellm.get("model_list")
    if not isinstance(entries, list) or not entries:
        raise ValueError("no model_list in the file (a LiteLLM proxy config has one)")
    router = litellm.get("router_settings") or {}
    strategy = router.get("routing_strategy", "simple-shuffle")
    routing = _ROUTING.get(strategy)
    if routing is None:
        notes.append(f"router_settings.routing_strategy {strategy!r} has no equivalent: the groups use weighted")
        routing = "weighted"
    for key in ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks"):
        if router.get(key) or (litellm.get("litellm_settings") or {}).get(key):
            notes.append(f"{key}: not converted (here, fallbacks: maps a deployment to the deployments after it)")

    providers: dict[tuple[str, str, str], dict[str, Any]] = {}
    groups: dict[str, list[tuple[str, float | None]]] = {}
    for i, entry in enumerate(entries):
        where = f"model_list[{i}]"
        params = entry.get("litellm_params") or {}
        info = entry.get("model_info") or {}
        public, target = entry.get("model_name"), params.get("model")
        if not isinstance(public, str) or not isinstance(target, str) or "/" not in target:
            notes.append(f"{where}: skipped (needs model_name and litellm_params.model as PREFIX/MODEL)")
            continue
        prefix, model = target.split("/", 1)
        api_base = params.get("api_base")
        if prefix in _NATIVE:
            kind, base_url = _NATIVE[prefix], api_base
        elif prefix in _OPENAI_COMPATIBLE:
            kind = "openai"
            base_url = api_base or _OPENAI_COMPATIBLE[prefix]
            if prefix == "azure" and api_base:
                base_url = str(api_base).rstrip("/") + "/openai/v1"
            if not base_url:
                notes.append(f"{where}: skipped ({prefix}/ needs litellm_params.api_base)")
                continue
        else:
            notes.append(f"{where}: skipped (provider prefix {prefix!r} is not supported here)")
            continue
        secret = params.get("api_key")
        key_env = _env_name(secret)
        if secret is not None and key_env is None:
            key_env = f"{_slug(prefix).upper().replace('-', '_').replace('.', '_')}_API_KEY"
            notes.append(f"{where}: the key was written in the file; set it in ${key_env} instead (not copied)")
        ident = (prefix, str(base_url or ""), key_env or "")
        provider = providers.get(ident)
        if provider is None:
            host = urlsplit(str(base_url)).hostname if base_url else None
            name = _slug(prefix)
            taken = {p["name"] for p in providers.values()}
            if name in taken and host:
                name = _slug(f"{prefix}-{host.split('.')[0]}")
            n = 2
            while name in taken:
                name, n = f"{_slug(prefix)}-{n}", n + 1
            provider = providers[ident] = {"name": name, "kind": kind}
            if base_url:
                provider["base_url"] = str(base_url)
            if key_env:
                provider["api_key_env"] = key_env
            if prefix == "azure" and params.get("api_version"):
                notes.append(f"{where}: api_version dropped (Azure's /openai/v1 API takes none)")
            provider["models"] = []
        if all(m["id"] != model for m in provider["models"]):
            spec: dict[str, Any] = {"id": model}
            for field, ours in _PRICES:
                value = _per_mtok(params, info, field)
                if value is not None:
                    spec[ours] = value
            context = info.get("max_input_tokens") or info.get("max_tokens")
            if isinstance(context, int) and context > 0:
                spec["context_length"] = context
            output = info.get("max_output_tokens")
            if isinstance(output, int) and output > 0:
                spec["max_output_tokens"] = output
            provider["models"].append(spec)
        for limit in ("rpm", "tpm"):
            if params.get(limit) is not None:
                notes.append(f"{where}: {limit} not converted (see rate_limits.models: a glob per model name)")
        weight = params.get("weight")
        groups.setdefault(public, []).append((f"{provider['name']}/{model}", float(weight) if weight else None))

    deployments = {f"{p['name']}/{m['id']}" for p in providers.values() for m in p["models"]}
    model_groups: dict[str, Any] = {}
    for public, members in groups.items():
        if public in deployments:
            notes.append(f"model_name {public!r}: already served as a PROVIDER/MODEL name, no group made")
            continue
        names = list(dict.fromkeys(name for name, _ in members))
        group: dict[str, Any] = {"deployments": names, "routing": routing}
        weights = {name: w for name, w in members}
        if routing == "weighted" and any(w is not None for w in weights.values()):
            group["weights"] = [weights[name] if weights[name] is not None else 1.0 for name in names]
        model_groups[public] = group
    if not providers:
        raise ValueError("no entry of model_list could be converted: " + "; ".join(notes))
    return {"providers": list(providers.values()), "model_groups": model_groups}, notes
