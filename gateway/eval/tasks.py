"""Exact-answer task families, generated from a seed. A task is its family, difficulty and parameters; the
prompt, the gold answer and the "trap" answer (the wrong answer a model that slips most often gives, shared by
every model so that a majority vote is not trivially right) are all computed from those, never stored.

Families: multi-step arithmetic (difficulty = number of operations), calendar dates (days after a date),
unit conversions (chained), string manipulation (reverse, then count a letter). Every prompt starts with
`Q<id>:` so a simulated model can recognise the task it is asked, and asks for a last line `Answer: <value>`.
"""

from __future__ import annotations

import datetime as dt
import random
import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["FAMILIES", "Task", "TaskBook", "extract_answer", "generate", "normalize"]

FAMILIES = ("arith", "dates", "units", "strings")
_TAIL = " Reply with your working, then a last line 'Answer: <value>'."


@dataclass(frozen=True, slots=True)
class Task:
    id: int
    family: str
    difficulty: int
    params: tuple[int | str, ...]

    @property
    def prompt(self) -> str:
        return f"Q{self.id}: {_PROMPTS[self.family](self.params)}{_TAIL}"

    @property
    def gold(self) -> str:
        return _GOLD[self.family](self.params)

    @property
    def trap(self) -> str:
        return _TRAP[self.family](self.params)


# --- arithmetic: start, then (op, operand) pairs applied left to right ----------------------------------------

_OPS = {"add": lambda a, b: a + b, "subtract": lambda a, b: a - b, "multiply by": lambda a, b: a * b}
_OP_NAMES = tuple(_OPS)


def _arith_steps(params: tuple[int | str, ...]) -> list[tuple[str, int]]:
    return [(_OP_NAMES[int(params[i])], int(params[i + 1])) for i in range(1, len(params), 2)]


def _arith_value(params: tuple[int | str, ...], skip: int | None = None) -> int:
    value = int(params[0])
    for i, (op, operand) in enumerate(_arith_steps(params)):
        if i != skip:
            value = _OPS[op](value, operand)
    return value


def _arith_prompt(params: tuple[int | str, ...]) -> str:
    steps = ", then ".join(f"{op} {operand}" for op, operand in _arith_steps(params))
    return f"Start with {params[0]}, {steps}. What is the result?"


def _arith_trap(params: tuple[int | str, ...]) -> str:
    steps = len(_arith_steps(params))
    trap = _arith_value(params, skip=steps // 2)  # a dropped step: the usual slip
    gold = _arith_value(params)
    return str(trap if trap != gold else gold + 10)


# --- dates: N days after a date (difficulty grows with N) -----------------------------------------------------


def _date(params: tuple[int | str, ...]) -> dt.date:
    return dt.date(2000, 1, 1) + dt.timedelta(days=int(params[0]))


def _dates_prompt(params: tuple[int | str, ...]) -> str:
    return f"What date is {params[1]} days after {_date(params).isoformat()}? Give it as YYYY-MM-DD."


def _dates_gold(params: tuple[int | str, ...]) -> str:
    return (_date(params) + dt.timedelta(days=int(params[1]))).isoformat()


def _dates_trap(params: tuple[int | str, ...]) -> str:
    return (_date(params) + dt.timedelta(days=int(params[1]) + 1)).isoformat()  # counted inclusively


# --- units: a quantity converted along a chain of factors ----------------------------------------------------

_UNITS = (("km", "m", 1000), ("m", "cm", 100), ("hours", "minutes", 60), ("minutes", "seconds", 60), ("kg", "g", 1000))


def _units_prompt(params: tuple[int | str, ...]) -> str:
    src, dst, _ = _UNITS[int(params[1])]
    return f"Convert {params[0]} {src} to {dst}, then multiply the result by {params[2]}."


def _units_gold(params: tuple[int | str, ...]) -> str:
    return str(int(params[0]) * _UNITS[int(params[1])][2] * int(params[2]))


def _units_trap(params: tuple[int | str, ...]) -> str:
    factor = _UNITS[int(params[1])][2]
    wrong = 100 if factor == 1000 else 1000 if factor == 100 else 100  # the neighbouring factor
    return str(int(params[0]) * wrong * int(params[2]))


# --- strings: reverse a word, then count a letter in it plus its length --------------------------------------


def _strings_prompt(params: tuple[int | str, ...]) -> str:
    return (
        f"Take the word '{params[0]}', reverse it, and append the number of times the letter '{params[1]}' "
        "occurs in it."
    )


def _strings_gold(params: tuple[int | str, ...]) -> str:
    word, letter = str(params[0]), str(params[1])
    return f"{word[::-1]}{word.count(letter)}"


def _strings_trap(params: tuple[int | str, ...]) -> str:
    word, letter = str(params[0]), str(params[1])
    return f"{word[::-1]}{word.count(letter) + 1}"  # one letter counted twice


_PROMPTS: dict[str, Callable[[tuple[int | str, ...]], str]] = {
    "arith": _arith_prompt,
    "dates": _dates_prompt,
    "units": _units_prompt,
    "strings": _strings_prompt,
}
_GOLD: dict[str, Callable[[tuple[int | str, ...]], str]] = {
    "arith": lambda p: str(_arith_value(p)),
    "dates": _dates_gold,
    "units": _units_gold,
    "strings": _strings_gold,
}
_TRAP: dict[str, Callable[[tuple[int | str, ...]], str]] = {
    "arith": _arith_trap,
    "dates": _dates_trap,
    "units": _units_trap,
    "strings": _strings_trap,
}


def _make(rng: random.Random, task_id: int, family: str) -> Task:
    difficulty = rng.randint(1, 5)
    params: tuple[int | str, ...]
    if family == "arith":
        ops: list[int | str] = [rng.randint(2, 40)]
        for _ in range(difficulty + 1):
            ops += [rng.randrange(len(_OP_NAMES)), rng.randint(2, 12)]
        params = tuple(ops)
    elif family == "dates":
        params = (rng.randint(0, 9000), rng.randint(1, 10) * 10**difficulty // 3 + rng.randint(0, 9))
    elif family == "units":
        params = (rng.randint(2, 99), rng.randrange(len(_UNITS)), rng.randint(2, 3 + 4 * difficulty))
    else:
        letters = "abcde"
        word = "".join(rng.choice(letters + "xyz") for _ in range(4 + 2 * difficulty))
        params = (word, rng.choice(letters))
    return Task(task_id, family, difficulty, params)


def generate(seed: int, count: int, families: tuple[str, ...] = FAMILIES) -> list[Task]:
    """`count` tasks, families in rotation, parameters drawn from `seed` (the same seed, the same tasks)."""
    rng = random.Random(f"tasks:{seed}")
    return [_make(rng, seed * 1_000_000 + i, families[i % len(families)]) for i in range(count)]


class TaskBook:
    """The tasks of a run by id, so a simulated model can tell which task a message asks."""

    _ID = re.compile(r"\bQ(\d+):")

    def __init__(self) -> None:
        self._tasks: dict[int, Task] = {}

    def add(self, tasks: list[Task]) -> None:
        for task in tasks:
            self._tasks[task.id] = task

    def find(self, text: str) -> Task | None:
        for match in self._ID.finditer(text):
            task = self._tasks.get(int(match.group(1)))
            if task is not None:
                return task
        return None


_ANSWER = re.compile(r"answer[ \t]*[:=][ \t]*(\S.*?)[ \t]*$", re.IGNORECASE | re.MULTILINE)


def normalize(value: str) -> str:
    return re.sub(r"\s+", " ", value.strip().strip(".").strip("'\"`*").strip()).lower()


def extract_answer(text: str) -> str | None:
    """The value of the last `Answer: <value>` line (the form every task asks for), normalised; else None."""
    found = [normalize(m.group(1)) for m in _ANSWER.finditer(text or "")]
    found = [value for value in found if value and value != "<value>"]  # not the prompt's own instruction
    return found[-1] if found else None
