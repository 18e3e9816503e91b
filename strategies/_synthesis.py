"""Mixture-of-Agents prompts: the analysis step and the synthesis step both see EVERY candidate answer (the
original design's synthesis never saw them). The lead answers the user's request from the candidates and the
analysis; the user's own messages stay as they were, the material is added as a system message."""

from __future__ import annotations

from typing import Any

from gateway.core.types import ChatRequest, ChatResponse

__all__ = ["analysis_request", "layer_request", "synthesis_request"]


def _candidates(answers: list[ChatResponse]) -> str:
    return "\n\n".join(f"<candidate {i + 1}>\n{a.content.strip()}\n</candidate {i + 1}>" for i, a in enumerate(answers))


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
        "You are given candidate answers from several assistants to the conversation below"
        + (" and an analysis of them" if analysis else "")
        + ". Write the single best final answer to the user: keep what the candidates agree on, resolve "
        "contradictions, fix errors, and do not mention the candidates or this process.\n\n" + _candidates(answers)
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
