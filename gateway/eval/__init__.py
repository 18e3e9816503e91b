"""`ultra-gateway eval`: measures which strategy wins on which fleet.

- `tasks`: exact-answer task families generated from a seed; gold answers are computed, never stored.
- `sim`: a simulated fleet (per-model skill, correlated mistakes, heavy-tailed latency, failures, prices) as a
  provider the real pipeline calls.
- `runner`: runs the real strategies through `build_gateway` + `Pipeline.complete` on virtual time.
- `report`: the Pareto table, JSON and the plot.
- `real`: the same measurements on a user's own tasks against real providers.
"""
