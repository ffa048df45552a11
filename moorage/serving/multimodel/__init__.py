"""A multi-model instance (Mode=MultiModel): one process that loads models on demand, each as an
ordinary single-model instance of its own (or into the image's own multi-model server), and unloads the
least recently used when memory runs short.

`python -m moorage.serving` runs this instead of the single-model runtime when MOORAGE_MME_SOURCE is
set (same command line). The environment the fleet gives it:

- MOORAGE_MME_SOURCE: the model prefix (s3://bucket/prefix/, file:///dir/ or a plain directory); a
  TargetModel is appended to it (prefix + TargetModel).
- MOORAGE_MME_MEMORY_BYTES: the memory loaded models may use here, measured (PSS of their processes);
  the machine's memory if unset.
- MOORAGE_MME_DISK_BYTES: the cap on downloaded/unpacked models on disk (default 20 GiB).
- MOORAGE_MME_CACHE_DIR: where they are kept (shared by the instances on one machine, under flock).
- MOORAGE_MME_CACHING: Enabled (default) or Disabled (unload and delete after each invocation).
- MOORAGE_MME_READY_WAIT_SECONDS (50): how long a request waits for a load before ModelNotReady.
- MOORAGE_MME_INVOCATION_TIMEOUT_SECONDS (60): a model's time to answer one invocation, counted once
  the model is loaded (the wait for the load is MOORAGE_MME_READY_WAIT_SECONDS's).
- MOORAGE_MME_S3_STORE: JSON [endpoint_url or null, anonymous] for moorage.artifacts.fetch.use_store.
- MOORAGE_MME_IMAGE: JSON of the container's RegisteredImage (optional).
- MOORAGE_MME_IMAGE_URI: the container's Image (optional): a framework image URI decides the packages each
  model's environment starts from, as for a single-model endpoint.
- MOORAGE_MME_MODEL_WORKERS: worker processes per loaded model (default 1).
- MOORAGE_MME_COMMAND: JSON list, the image's own server command (``serve`` included), for an image
  that runs its own multi-model server: the instance starts that one server (SageMaker container
  contract: SAGEMAKER_BIND_TO_PORT, GET /ping) and loads, invokes and unloads models through its
  multi-model API (container.py) instead of a process per model. If the server exits, so does the
  instance (status 1), to be replaced.
- MOORAGE_MME_PYTHON: the interpreter a ``python`` MOORAGE_MME_COMMAND runs with (the image's prepared
  environment); this process's own if unset.

The MOORAGE_MME_* variables are taken out of the environment as they are read; everything else
passes through to the model processes.
"""
