"""LangChain's ChatOpenAI pointed at the gateway, with `with_structured_output` (needs `pip install
'ultra-gateway[examples]'` or `langchain-openai`).

    ultra-gateway serve
    python examples/langchain_structured.py
"""

import os

from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field


class Movie(BaseModel):
    title: str = Field(description="The film's title")
    year: int = Field(description="Year of release")
    genres: list[str]


llm = ChatOpenAI(
    model="ultra-cost",
    base_url=os.environ.get("ULTRA_BASE_URL", "http://127.0.0.1:8000/v1"),
    api_key=os.environ.get("ULTRA_API_KEY", "anything-when-auth-is-off"),
)
print("invoke:", llm.invoke("Say hello in five words.").content)
movie = llm.with_structured_output(Movie).invoke("Tell me about a film from 1999.")
assert isinstance(movie, Movie)
print("structured:", movie.model_dump())
