"""Rate limits: per API key, per model/alias and global, requests and tokens per minute.

`policy.py` (limits, estimates, headers), `_gcra.py` (the arithmetic), `base.py` (the backend protocol),
`memory.py` and `redis.py` (the two backends), `limiter.py` (the facade the service calls).
"""
