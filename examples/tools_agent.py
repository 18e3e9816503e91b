"""A tool-calling agent loop through the openai SDK: the model asks for a tool, we run it and send the result
back, until the model answers in text. (The mock fleet calls the first tool, then answers with its result.)

    ultra-gateway serve
    python examples/tools_agent.py
"""

import json
import os

from openai import OpenAI

client = OpenAI(
    base_url=os.environ.get("ULTRA_BASE_URL", "http://127.0.0.1:8000/v1"),
    api_key=os.environ.get("ULTRA_API_KEY", "anything-when-auth-is-off"),
)

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["C", "F"]}},
                "required": ["city", "unit"],
            },
        },
    }
]


def get_weather(city: str, unit: str) -> str:
    return json.dumps({"city": city, "temperature": 21 if unit == "C" else 70, "unit": unit})


messages = [{"role": "user", "content": "What's the weather in Lisbon?"}]
for step in range(5):
    reply = client.chat.completions.create(model="ultra-waterfall", messages=messages, tools=TOOLS)
    message = reply.choices[0].message
    messages.append(message.model_dump(exclude_none=True))
    if not message.tool_calls:
        print("final answer:", message.content)
        break
    for call in message.tool_calls:
        arguments = json.loads(call.function.arguments)
        print(f"step {step}: {call.function.name}({arguments})")
        messages.append({"role": "tool", "tool_call_id": call.id, "content": get_weather(**arguments)})
else:
    raise SystemExit("the model never answered in text")
