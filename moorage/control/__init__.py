"""Control plane: resources (models, endpoint configs, endpoints), their state machines and the reconciler
that turns desired state into running instances. Operations speak SageMaker's resource vocabulary; the
wire encoding stays in `moorage.api`."""
