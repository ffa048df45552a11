"""Handlers of every model in the multi-model benchmark (bench/multimodel.py): one item matrix per model,
top-k items by dot product with a query vector drawn from the request's seed.

The same file is ``code/inference.py`` in all 200 archives and serves under Moorage and under
multi-model-server with the SageMaker inference toolkit. Numpy only, no pydantic: a model's load time
is reading its matrix, not importing libraries.
"""

import json
import os

import numpy as np

JSON = "application/json"


def model_fn(model_dir):
    with open(os.path.join(model_dir, "meta.json")) as f:
        meta = json.load(f)
    return {"name": meta["name"], "items": np.load(os.path.join(model_dir, "items.npy"))}


def input_fn(body, content_type):
    if (content_type or JSON).split(";", 1)[0].strip() != JSON:
        error = ValueError(f"unsupported content type {content_type}: send application/json")
        error.status_code = 415
        raise error
    request = json.loads(body)
    return int(request["seed"]), int(request.get("k", 10))


def predict_fn(data, model):
    seed, k = data
    items = model["items"]
    query = np.random.default_rng(seed).standard_normal(items.shape[1], dtype=np.float32)
    scores = items @ query
    top = np.argpartition(-scores, k)[:k]
    top = top[np.argsort(-scores[top])]
    return {"model": model["name"], "items": top.tolist(), "scores": scores[top].round(5).tolist()}


def output_fn(prediction, accept):
    return json.dumps(prediction)
