.PHONY: install fmt lint typecheck test check bench profile lock

install:
	python3 -m venv .venv
	.venv/bin/python -m pip install -e '.[dev,deploy]'

fmt:
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .

lint:
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/lint-imports

typecheck:
	.venv/bin/mypy

test:
	.venv/bin/python -m pytest -q

check: lint typecheck test

bench:
	.venv/bin/python bench/run.py --quick

profile:  # needs py-spy: pip install -e ".[bench]"
	.venv/bin/python -m bench.profile

lock:  # re-pin the image's runtime packages (requirements/runtime.txt) from pyproject.toml
	python3 requirements/lock.py
