"""Embeddings through the openai SDK, and a cosine similarity between them. (The mock fleet's vectors are
derived from a hash of the text, so on it the similarities mean nothing; a real embedding model's do.)

    ultra-gateway serve
    python examples/embeddings.py
"""

import math
import os

from openai import OpenAI

client = OpenAI(
    base_url=os.environ.get("ULTRA_BASE_URL", "http://127.0.0.1:8000/v1"),
    api_key=os.environ.get("ULTRA_API_KEY", "anything-when-auth-is-off"),
)

texts = ["The cat sat on the mat.", "A cat is sitting on a mat.", "Quarterly revenue rose 4%."]
result = client.embeddings.create(model="swift/swift-mini", input=texts)
vectors = [item.embedding for item in result.data]


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / (math.hypot(*a) * math.hypot(*b))


print(f"{len(vectors)} vectors of {len(vectors[0])} dimensions, {result.usage.prompt_tokens} tokens")
for i in range(1, len(texts)):
    print(f"similarity(0, {i}) = {cosine(vectors[0], vectors[i]):.3f}")
