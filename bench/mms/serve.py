"""The container entrypoint of a SageMaker multi-model container built on the inference toolkit."""

from sagemaker_inference import model_server

model_server.start_model_server(handler_service="mme_handler_service")
