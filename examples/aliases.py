"""Every strategy alias and model group the gateway lists, through the openai SDK.

ultra-gateway serve            # the built-in mock fleet, no keys
python examples/aliases.py
"""

import os

from openai import OpenAI

client = OpenAI(
    base_url=os.environ.get("ULTRA_BASE_URL", "http://127.0.0.1:8000/v1"),
    api_key=os.environ.get("ULTRA_API_KEY", "anything-when-auth-is-off"),
)

names = [m.id for m in client.models.list() if (m.model_extra or {}).get("ultra", {}).get("type") != "deployment"]
for name in names:
    reply = client.chat.completions.create(
        model=name, messages=[{"role": "user", "content": "Name one prime number."}], max_tokens=64
    )
    ultra = (reply.model_extra or {}).get("ultra", {})
    calls = ", ".join(f"{c['provider']}/{c['model']} ({c['role']}, {c['status']})" for c in ultra.get("calls", []))
    print(f"{name}: {reply.choices[0].message.content[:60]!r} -- {calls}, ${ultra.get('cost_usd', 0):.6f}")
print(f"{len(names)} names answered")
