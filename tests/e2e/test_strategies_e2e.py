"""Issue 3 end to end: every ultra-* alias through the real server (subprocess) against a fake OpenAI-compatible
upstream, streaming and not, with the openai SDK; a race loser's upstream request is really closed; the
synthesis request carries every candidate answer."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import openai
import pytest

from strategies import BUILTIN_ALIASES
from tests._gateway_process import GatewayProcess
from tests.fakes.openai_upstream import FakeOpenAI

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

ALIASES = [*BUILTIN_ALIASES, "ultra-race", "ultra-moa-2"]  # the built-ins and two configured here


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@contextmanager
def serving(fake: FakeOpenAI, config: Path, total_s: int, rest: str) -> Iterator[openai.OpenAI]:
    """The gateway as a subprocess with one provider `up` on the fake, and an SDK client for it."""
    config.write_text(f"""
providers:
  - name: up
    kind: openai
    base_url: {fake.url}
    max_retries: 0
    timeout: {{connect_s: 2, read_s: 5, total_s: {total_s}}}
{rest}
cache: {{enabled: false}}
""")
    with GatewayProcess(config) as gateway:
        yield openai.OpenAI(base_url=gateway.base_url + "/v1", api_key="unused", max_retries=0, timeout=30)


@pytest.fixture(scope="module")
def client(fake: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    models = """    models:
      - {id: echo, input_cost_per_mtok: 0.5, output_cost_per_mtok: 1, quality: 0.7}
      - {id: slow-300, input_cost_per_mtok: 2, output_cost_per_mtok: 4, quality: 0.9}
      - {id: slow-3000, input_cost_per_mtok: 1, output_cost_per_mtok: 1, quality: 0.6}
      - {id: status-500, input_cost_per_mtok: 0.1, output_cost_per_mtok: 0.1, quality: 0.5}
strategies:
  ultra-race: {kind: parallel, candidates: [up/echo, up/slow-3000], initial_width: 2, min_width: 2}
  ultra-moa-2: {kind: simple, candidates: [up/echo, up/slow-300], lead: up/slow-300, analysis: false,
                skip_on_agreement: false}"""  # the echo candidates agree: synthesise anyway, to see its prompt
    with serving(fake, tmp_path_factory.mktemp("strategies") / "gateway.yaml", 10, models) as sdk:
        yield sdk


USER = [{"role": "user", "content": "hello strategies"}]


@pytest.mark.parametrize("alias", ALIASES)
def test_every_alias_answers_whole_and_streamed(client: openai.OpenAI, alias: str) -> None:
    response = client.chat.completions.with_raw_response.create(model=alias, messages=USER)
    completion = response.parse()
    assert completion.model == alias
    assert completion.choices[0].message.content
    meta = completion.model_extra["ultra"]
    assert response.headers["x-ultra-strategy"] == (meta.get("chosen_strategy") or meta["strategy"])
    assert response.headers["x-ultra-providers"]
    assert completion.usage is not None
    assert completion.usage.total_tokens == sum(c["usage"]["total_tokens"] for c in meta["calls"] if c["usage"])
    chunks = list(
        client.chat.completions.create(model=alias, messages=USER, stream=True, stream_options={"include_usage": True})
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip()
    assert chunks[-1].usage is not None
    assert "ultra" in chunks[-1].model_extra


def test_a_race_loser_is_cancelled_and_its_upstream_request_closed(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    fake.disconnect.clear()
    completion = client.chat.completions.create(model="ultra-race", messages=USER)
    calls = {c["model"]: c["status"] for c in completion.model_extra["ultra"]["calls"]}
    assert calls == {"echo": "ok", "slow-3000": "cancelled"}
    assert fake.disconnect.wait(5)  # the gateway hung up on the loser long before its 3 s answer
    assert "slow-3000" in fake.disconnected


@pytest.fixture(scope="module")
def drip_client(fake: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    """A gateway of its own: in the main one, latency-seeking aliases would pick `drip` (its first chunk is fast)."""
    with serving(fake, tmp_path_factory.mktemp("drip") / "gateway.yaml", 30, "    models: [{id: drip}]") as sdk:
        yield sdk


def test_a_stream_is_relayed_as_it_comes_and_a_client_leaving_closes_the_upstream(
    drip_client: openai.OpenAI, fake: FakeOpenAI
) -> None:
    fake.disconnect.clear()
    stream = drip_client.chat.completions.create(model="up/drip", messages=USER, stream=True)
    events = iter(stream)
    assert next(events).choices[0].delta.role == "assistant"
    # The fake drips one chunk per 100 ms for 20 s: these arrive while it is still streaming (nothing buffered).
    assert [next(events).choices[0].delta.content for _ in range(3)] == ["drop0 ", "drop1 ", "drop2 "]
    stream.close()
    # The gateway's own bound on the call is total_s 30: only the hang-up explains a disconnect within 5 s.
    assert fake.disconnect.wait(5)
    assert "drip" in fake.disconnected


def test_synthesis_is_given_every_candidate_answer(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    completion = client.chat.completions.create(model="ultra-moa-2", messages=USER)
    roles = [c["role"] for c in completion.model_extra["ultra"]["calls"]]
    assert roles == ["candidate", "candidate", "synthesis"]
    synthesis = fake.bodies_for("slow-300")[-1]
    system = synthesis["messages"][0]
    assert system["role"] == "system"
    assert system["content"].count("echo: hello strategies") == 2  # both candidates' answers
    assert synthesis["messages"][1:] == USER  # the user's conversation, untouched
