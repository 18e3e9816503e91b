"""Exact-match response cache: `keys.py` (canonical request digest and scope), `base.py` (the backend
protocol), `memory.py` and `redis.py` (the two backends), `responses.py` (the cache the service calls:
single-flight, cross-replica lock, what may be stored)."""
