"""Inbound dialects: the APIs clients speak to the gateway besides Chat Completions, translated to and from the
gateway's OpenAI chat shape by pure functions (data in, data out; no HTTP, no I/O), so each is tested on golden
payloads and every inbound API runs on the one chat pipeline.

- `messages`: Anthropic's Messages API (`/v1/messages`, `/v1/messages/count_tokens`).
- `responses`: OpenAI's Responses API (`/v1/responses`).
- `embeddings`: the embeddings request's validation (`/v1/embeddings`).
- `_validation`: pydantic errors → the field path clients see in an error's `param`.
"""
