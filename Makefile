.PHONY: install fmt lint typecheck test check bench profile

install:
	python3 -m venv .venv
	.venv/bin/python -m pip install -e '.[dev]'

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
