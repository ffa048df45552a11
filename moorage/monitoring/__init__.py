"""The CloudWatch subset SageMaker users call for endpoints and deployment guardrails: metric history
kept in the state store, queries over it, and alarms evaluated on it."""
