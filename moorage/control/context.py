"""Who is calling: the region and account that ARNs are minted in."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Caller:
    region: str
    account: str

    def arn(self, kind: str, name: str) -> str:
        """SageMaker lower-cases resource names inside ARNs."""
        return f"arn:aws:sagemaker:{self.region}:{self.account}:{kind}/{name.lower()}"
