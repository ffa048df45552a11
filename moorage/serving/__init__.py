"""The in-instance serving runtime: runs a model's inference.py behind the SageMaker container contract.

Layout, in the order a request meets it:
- `instance` (the process main), `settings`, `handlers` (inference.py resolved once), `supervisor`
  and `worker` (forked processes, one Unix socket each), `statefiles` (instance.json / failure.json);
- `app` (routes, served by `moorage.http`'s HTTP/1.1 server), `invocations` (the toolkit's
  per-request algorithm), `context` (the handlers' `context` argument), `defaults` and `codecs/`.

This package imports nothing heavy: numpy is imported only when a default codec first needs it.
"""
