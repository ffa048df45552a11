"""Compute providers start, stop and watch instances; every provider hands back addresses that speak the
SageMaker container contract, so routing does not care where an instance lives."""
