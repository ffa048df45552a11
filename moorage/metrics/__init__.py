"""Metrics with CloudWatch's AWS/SageMaker names: the counters the data plane keeps, instance CPU and
memory sampled on a schedule, and their Prometheus exposition on GET /metrics."""
