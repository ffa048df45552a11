"""Asynchronous inference: InvokeEndpointAsync requests queued in the state store, run by the server that
reconciles, their results written to S3 or disk and announced on SNS-shaped webhooks (docs/async.md)."""
