"""Framework-free domain: OpenAI-shaped types, the error tree, the Provider protocol, pools and streams.

Imports only the standard library and pydantic, so strategies and tests can use it without HTTP or Redis.
"""
