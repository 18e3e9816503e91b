"""Anthropic's own SDK against the gateway's `/v1/messages`: any model name the gateway serves, an alias here.

ultra-gateway serve
python examples/anthropic_messages.py
"""

import os

import anthropic

base_url = os.environ.get("ULTRA_BASE_URL", "http://127.0.0.1:8000/v1").removesuffix("/v1")  # the SDK adds /v1
client = anthropic.Anthropic(base_url=base_url, api_key=os.environ.get("ULTRA_API_KEY", "anything-when-auth-is-off"))

message = client.messages.create(
    model="ultra-quality",
    max_tokens=256,
    system="Answer briefly.",
    messages=[{"role": "user", "content": "Why is the sky blue?"}],
)
print("messages.create:", message.content[0].text)
print(f"usage: input={message.usage.input_tokens} output={message.usage.output_tokens}")

with client.messages.stream(
    model="swift/swift-mini", max_tokens=128, messages=[{"role": "user", "content": "Count to three."}]
) as stream:
    text = "".join(stream.text_stream)
print("messages.stream:", text)
