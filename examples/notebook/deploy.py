"""The SageMaker deployment notebook (deploy.ipynb) as a script, cell for cell.

Run it from this folder with the environment `moorage env` prints (or an AWS account's, with an
ECR image and a role that exist there):

    eval "$(moorage env)"
    python deploy.py

Nothing here names an endpoint URL: boto3 and the SageMaker SDK find S3, STS and SageMaker through
the standard AWS_* variables, and the SDK's default bucket through its config file.
"""

# %%
import json
import tarfile
import tempfile
from pathlib import Path

import boto3
import sagemaker

ACCOUNT = "123456789012"
IMAGE_URI = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/recommender-serving:latest"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/SageMakerRole"
ENDPOINT_NAME = sagemaker.utils.name_from_base("recommender")

# %% [markdown]
# ## 1. Pack the vectors into model.tar.gz and upload it

# %%
session = sagemaker.Session(boto_session=boto3.Session())
bucket = session.default_bucket()

archive = Path(tempfile.mkdtemp()) / "model.tar.gz"
with tarfile.open(archive, "w:gz") as tar:
    for name in ("users.csv.gz", "items.csv.gz"):
        tar.add(Path("data") / name, arcname=name)
boto3.client("s3").upload_file(str(archive), bucket, "recommender/model.tar.gz")
model_data = f"s3://{bucket}/recommender/model.tar.gz"
print(f"uploaded {model_data}")

# %% [markdown]
# ## 2. Deploy: the SDK adds ./code to the model (repack) and starts one instance

# %%
model = sagemaker.Model(
    image_uri=IMAGE_URI,
    model_data=model_data,
    role=ROLE,
    entry_point="inference.py",
    source_dir="./code",
    predictor_cls=sagemaker.predictor.Predictor,
    sagemaker_session=session,
)
predictor = model.deploy(
    instance_type="ml.m5.xlarge",
    initial_instance_count=1,
    endpoint_name=ENDPOINT_NAME,
    wait=True,
)

# %% [markdown]
# ## 3. Ask for three recommendations

# %%
response = predictor.predict(
    json.dumps({"user_id": "114521", "k": 3}),
    initial_args={"ContentType": "application/json"},
)
prediction = json.loads(response)
for item in prediction["recommendations"]:
    print(f"{prediction['user_id']}: {item['item_id']} {item['score']:.4f}")

# %% [markdown]
# ## 4. Clean up

# %%
predictor.delete_endpoint()
model.delete_model()
print(f"deleted endpoint {ENDPOINT_NAME} and model {model.name}")
