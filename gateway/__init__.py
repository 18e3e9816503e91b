"""Ultra Gateway: an OpenAI-compatible LLM gateway with orchestration strategies."""

__version__ = "0.1.0"
