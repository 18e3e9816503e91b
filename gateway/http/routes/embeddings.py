"""`POST /v1/embeddings`: OpenAI's embeddings API, passed to the named deployment (`provider/model` or a bare
model id one provider serves). Strategy aliases do not serve embeddings (vectors from different models cannot be
mixed or compared), nor do providers whose API has none; both are a 400 naming `model`."""

from __future__ import annotations

from gateway.dialects.embeddings import embeddings_request
from gateway.http.asgi import Inbound, raw_route, send_json
from gateway.http.edge import ASGIApp
from gateway.http.errors import rendered
from gateway.http.routes._bridge import embed
from gateway.service import Gateway

__all__ = ["embeddings_route"]


async def _embeddings(inbound: Inbound) -> None:
    body = embeddings_request(await inbound.json())

    async def whole() -> None:
        answer = await embed(inbound, body)
        await send_json(inbound.send, 200, answer.body, answer.headers)

    await inbound.whole(whole())


def embeddings_route(gateway: Gateway) -> ASGIApp:
    return raw_route(gateway, {"POST": _embeddings}, rendered)
