"""Structured output through the openai SDK: a pydantic model becomes a `response_format` json_schema, and the
answer is parsed back into it. (The mock fleet answers JSON valid against the schema.)

    ultra-gateway serve
    python examples/structured_output.py
"""

import os

from openai import OpenAI
from pydantic import BaseModel

client = OpenAI(
    base_url=os.environ.get("ULTRA_BASE_URL", "http://127.0.0.1:8000/v1"),
    api_key=os.environ.get("ULTRA_API_KEY", "anything-when-auth-is-off"),
)


class CalendarEvent(BaseModel):
    name: str
    date: str
    participants: list[str]


completion = client.chat.completions.parse(
    model="steady/steady-base",
    messages=[{"role": "user", "content": "Alice and Bob are going to a science fair on Friday."}],
    response_format=CalendarEvent,
)
event = completion.choices[0].message.parsed
assert isinstance(event, CalendarEvent)
print("parsed:", event.model_dump())
