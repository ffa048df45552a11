"""The AWS configuration this machine has (environment, profiles), read without touching the network."""

from __future__ import annotations

from typing import Any


def offline_session() -> Any:
    """A botocore session whose credential chain skips the instance-metadata and container
    providers: those would reach link-local addresses on every machine that is not on EC2/ECS."""
    import botocore.session

    session = botocore.session.Session()
    resolver = session.get_component("credential_provider")
    for name in ("iam-role", "container-role"):
        if resolver.get_provider(name) is not None:
            resolver.remove(name)
    return session
