"""Mixture-of-Agents prompts: the analysis step and the synthesis step both see EVERY candidate answer (the
original design's synthesis never saw them). The lead answers the user's request from the candidates and the
analysis; the user's own messages stay as they were, the material is added as a system message.

The prompts are kept lean, since the lead is usually the dearest model and reads every candidate: short
instructions, whitespace collapsed, and each candidate capped at `MAX_CANDIDATE_CHARS` (its head and its tail,
where a final answer usually is)."""

from __future__ import annotations

import re
from typing import Any

from gateway.core.types import ChatRequest, ChatResponse

__all__ = ["analysis_request", "layer_request", "synthesis_request"]


MAX_CANDIDATE_CHARS = 6000


def _lean(text: str) -> str:
    text = re.sub(r"[ \t]+", " ", re.sub(r"\n\s*\n+", "\n\n", text.strip()))
    if len(text) <= MAX_CANDIDATE_CHARS:
        return text
    half = MAX_CANDIDATE_CHARS // 2
    return f"{text[:half]}\n[...]\n{text[-half:]}"


def _candidates(answers: list[ChatResponse]) -> str:
    return "\n".join(f"<candidate {i + 1}>\n{_lean(a.content)}\n</candidate {i + 1}>" for i, a in enumerate(answers))


def _with_system(request: ChatRequest, text: str, **overrides: Any) -> ChatRequest:
    messages = [{"role": "system", "content": text}, *request.messages]
    return request.with_messages(messages, stream=False, **overrides)


def analysis_request(request: ChatRequest, answers: list[ChatResponse]) -> ChatRequest:
    text = (
        "Several assistants answered the conversation below. Compare their answers: where they agree, where they "
        "contradict each other, and which statements are likely factual errors or omissions. Be concise; do not "
        "write a final answer.\n\n" + _candidates(answers)
    )
    return _with_system(request, text)


def synthesis_request(request: ChatRequest, answers: list[ChatResponse], analysis: str | None) -> ChatRequest:
    text = (
        "Candidate answers to the conversation below"
        + (", and an analysis of them" if analysis else "")
        + ". Write the best final answer: keep what they agree on, resolve contradictions, fix errors; do not "
        "mention the candidates.\n" + _candidates(answers)
    )
    if analysis:
        text += f"\n\n<analysis>\n{analysis.strip()}\n</analysis>"
    return _with_system(request, text)


def layer_request(request: ChatRequest, previous: list[ChatResponse]) -> ChatRequest:
    """Mixture-of-Agents layer n > 1: proposers answer again, seeing layer n-1's answers."""
    text = (
        "Other assistants answered the conversation below. Use their answers as references: improve on them and "
        "answer the user yourself.\n\n" + _candidates(previous)
    )
    return _with_system(request, text)
