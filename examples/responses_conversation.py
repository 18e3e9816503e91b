"""A two-turn conversation through OpenAI's Responses API: the second turn names the first by
`previous_response_id`, so the gateway supplies the history.

    ultra-gateway serve
    python examples/responses_conversation.py
"""

import os

from openai import OpenAI

client = OpenAI(
    base_url=os.environ.get("ULTRA_BASE_URL", "http://127.0.0.1:8000/v1"),
    api_key=os.environ.get("ULTRA_API_KEY", "anything-when-auth-is-off"),
)

first = client.responses.create(model="ultra-balanced", input="My name is Ada. Remember it.")
print("turn 1:", first.output_text)
second = client.responses.create(model="ultra-balanced", input="What is my name?", previous_response_id=first.id)
print("turn 2:", second.output_text)
print("turn 2 prompt tokens (history included):", second.usage.input_tokens)
stored = client.responses.retrieve(second.id)
print("retrieved:", stored.id, stored.status)
