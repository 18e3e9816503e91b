"""Orchestration strategies. Imports `gateway.core` only (enforced by import-linter)."""
