"""SQLAlchemy tables. Rows hold domain facts, never wire shapes: `spec` columns keep the accepted request
members so Describe* can echo every field the user sent."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Float, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Declarative base for every Moorage table."""


class ModelRow(Base):
    __tablename__ = "models"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    arn: Mapped[str] = mapped_column(String(2048))
    creation_time: Mapped[float] = mapped_column(Float)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    tags: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)


class EndpointConfigRow(Base):
    __tablename__ = "endpoint_configs"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    arn: Mapped[str] = mapped_column(String(2048))
    creation_time: Mapped[float] = mapped_column(Float)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    tags: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)


class EndpointRow(Base):
    __tablename__ = "endpoints"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    # Endpoint names are unique regardless of case; the original spelling is kept in `name`.
    name_key: Mapped[str] = mapped_column(String(63), unique=True, index=True)
    arn: Mapped[str] = mapped_column(String(2048))
    config_name: Mapped[str] = mapped_column(String(63))
    status: Mapped[str] = mapped_column(String(32))
    failure_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    creation_time: Mapped[float] = mapped_column(Float)
    last_modified_time: Mapped[float] = mapped_column(Float)
    # What is (or is being) deployed: the endpoint config and its models as they were when the
    # deployment was accepted, so a restart can rebuild instances even if those resources are deleted.
    deployed: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    pending: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    pending_start_time: Mapped[float | None] = mapped_column(Float, nullable=True)
    deployment_config: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    tags: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    generation: Mapped[int] = mapped_column(Integer, default=0)
