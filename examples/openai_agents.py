"""The OpenAI Agents SDK on the gateway: an agent with a function tool, its model served through
`/v1/chat/completions` (needs `pip install 'ultra-gateway[examples]'` or `openai-agents`).

    ultra-gateway serve
    python examples/openai_agents.py
"""

import os

from agents import Agent, OpenAIChatCompletionsModel, Runner, function_tool, set_tracing_disabled
from openai import AsyncOpenAI

set_tracing_disabled(True)  # the SDK would otherwise upload traces to OpenAI
client = AsyncOpenAI(
    base_url=os.environ.get("ULTRA_BASE_URL", "http://127.0.0.1:8000/v1"),
    api_key=os.environ.get("ULTRA_API_KEY", "anything-when-auth-is-off"),
)


@function_tool
def get_population(city: str) -> str:
    """The population of a city."""
    return f"{city} has about 545,000 inhabitants."


agent = Agent(
    name="Geographer",
    instructions="Answer with the help of your tools.",
    model=OpenAIChatCompletionsModel(model="ultra-waterfall", openai_client=client),
    tools=[get_population],
)
result = Runner.run_sync(agent, "How many people live in Lisbon?")
print("tool calls:", sum(1 for item in result.new_items if item.type == "tool_call_item"))
print("final output:", result.final_output)
