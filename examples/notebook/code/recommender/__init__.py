"""Helpers of the notebook's recommender: request/response models, vector files, scoring."""
