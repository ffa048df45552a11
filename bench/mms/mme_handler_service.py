"""Handler service for multi-model-server in multi-model mode, run inside the benchmark's MMS venv.

The toolkit's default handler service imports the user module ``inference`` from ``sys.path``, which in
multi-model mode holds no model's ``code/`` directory: each model is loaded by its own worker process,
so this service puts that model's ``code/`` first on ``sys.path`` before the toolkit loads it (the
SageMaker framework containers' handler services do the same).
"""

import os
import sys

from sagemaker_inference.default_handler_service import DefaultHandlerService


class HandlerService(DefaultHandlerService):
    def initialize(self, context):
        sys.path.insert(0, os.path.join(context.system_properties["model_dir"], "code"))
        super().initialize(context)
