"""A streamed answer with usage on the last chunk, through the openai SDK.

ultra-gateway serve
python examples/streaming.py
"""

import os

from openai import OpenAI

client = OpenAI(
    base_url=os.environ.get("ULTRA_BASE_URL", "http://127.0.0.1:8000/v1"),
    api_key=os.environ.get("ULTRA_API_KEY", "anything-when-auth-is-off"),
)

stream = client.chat.completions.create(
    model="ultra-speed",
    messages=[{"role": "user", "content": "Write one sentence about rivers."}],
    stream=True,
    stream_options={"include_usage": True},
)
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        print(chunk.choices[0].delta.content, end="", flush=True)
    if chunk.usage is not None:  # the last chunk: summed over every upstream call the strategy made
        print()
        print(f"usage: prompt={chunk.usage.prompt_tokens} completion={chunk.usage.completion_tokens}")
        print("served by:", [c["provider"] for c in (chunk.model_extra or {})["ultra"]["calls"]])
