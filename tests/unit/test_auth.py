"""API keys: the three ways to give one, 401/403, model globs, open mode; no secret in any message."""

from __future__ import annotations

import hashlib

import pytest

from gateway.auth import Authenticator
from gateway.core.errors import AuthenticationFailed, ModelNotAllowed
from gateway.settings import AuthSettings, KeySettings


def auth() -> Authenticator:
    settings = AuthSettings(
        keys=[
            KeySettings(name="inline", key="sk-inline", models=["ultra-*"], rpm=5),
            KeySettings(name="env", key_env="TEAM_KEY", tenant="acme"),
            KeySettings(name="hashed", key_sha256=hashlib.sha256(b"sk-hashed").hexdigest(), models=["openai/*"]),
        ]
    )
    return Authenticator.from_settings(settings, env={"TEAM_KEY": "sk-from-env"})


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("Bearer sk-inline", "inline"),
        ("bearer sk-from-env", "env"),
        ("Bearer   sk-hashed ", "hashed"),
    ],
)
def test_each_key_source_authenticates(header: str, name: str) -> None:
    principal = auth().authenticate(header)
    assert principal.name == name
    assert not principal.anonymous


@pytest.mark.parametrize("header", [None, "", "Bearer", "Basic sk-inline", "Bearer sk-wrong", "sk-inline"])
def test_missing_or_wrong_keys_are_401_and_never_echoed(header: str | None) -> None:
    with pytest.raises(AuthenticationFailed) as caught:
        auth().authenticate(header)
    error = caught.value
    assert error.status == 401
    assert error.to_body()["error"]["code"] == "invalid_api_key"
    for secret in ("sk-inline", "sk-wrong", "sk-from-env", "sk-hashed"):
        assert secret not in error.message


def test_model_globs_and_403() -> None:
    a = auth()
    inline = a.authenticate("Bearer sk-inline")
    a.authorize(inline, "ultra-simple")
    with pytest.raises(ModelNotAllowed) as caught:
        a.authorize(inline, "openai/gpt-4o")
    assert caught.value.status == 403
    assert caught.value.to_body()["error"] == {
        "message": "The key 'inline' is not allowed to use the model 'openai/gpt-4o'.",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_allowed",
    }
    hashed = a.authenticate("Bearer sk-hashed")
    a.authorize(hashed, "openai/gpt-4o-mini")
    with pytest.raises(ModelNotAllowed):
        a.authorize(hashed, "Openai/gpt-4o")  # globs are case-sensitive, as model ids are
    env = a.authenticate("Bearer sk-from-env")
    assert env.tenant == "acme"
    a.authorize(env, "anything/at-all")  # default glob "*"


def test_no_keys_means_open() -> None:
    a = Authenticator.from_settings(AuthSettings(keys=[]))
    assert a.open
    assert a.authenticate(None).anonymous
    assert a.authenticate("Bearer whatever").anonymous
