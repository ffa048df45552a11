"""`python -m moorage.serving --model-dir DIR --socket-dir SOCKDIR [--workers N]`: one endpoint instance."""

import os
import sys


def run() -> int:
    from moorage.lifeline import start_model_process

    start_model_process(os.environ)  # before anything slow: the server may already be gone
    # Thread limits must be in the environment before numpy or user code is first imported.
    from moorage.serving.settings import limit_threads

    limit_threads(os.environ)
    if os.environ.get("MOORAGE_MME_SOURCE"):  # a multi-model instance (moorage/serving/multimodel)
        from moorage.serving.multimodel.manager import main as multi_model_main

        return multi_model_main()
    from moorage.serving.instance import main

    return main()


if __name__ == "__main__":
    sys.exit(run())
