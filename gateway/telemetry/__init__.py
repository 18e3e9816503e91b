"""OpenTelemetry: tracing set up from the standard OTEL_* variables, and the Provider wrapper that records one
GenAI CLIENT span per upstream attempt."""
