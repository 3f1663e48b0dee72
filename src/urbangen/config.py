"""Configuration: strict pydantic models loaded from YAML, and environment settings for endpoints.

Every step's config derives from :class:`StrictModel` (frozen, unknown fields rejected). Endpoints and
credentials never live in config files: they come from the environment through :class:`Settings`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from urbangen.errors import UrbangenError

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for every config: immutable, and a misspelt field is an error rather than silently ignored."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def error_lines(exc: ValidationError, prefix: str = "") -> list[str]:
    """One ``field: problem`` line per error of ``exc``; fields are dotted paths (under ``prefix``)."""
    lines = []
    for error in exc.errors():
        field = ".".join([prefix] * bool(prefix) + [str(part) for part in error["loc"]]) or "<root>"
        if error["type"] == "extra_forbidden":
            lines.append(f"{field}: unknown field")
        elif error["type"] == "value_error" and not error["loc"]:
            # a model-level check: its message names its own fields, one problem per line
            message = str(error["ctx"]["error"]) if "ctx" in error else error["msg"]
            lines += [f"{prefix}: {line}" if prefix else line for line in message.splitlines()]
        else:
            lines.append(f"{field}: {error['msg']} (got {error.get('input')!r})")
    return lines


def format_validation_error(exc: ValidationError, source: str) -> str:
    return "\n".join([f"invalid config in {source}:"] + [f"  {line}" for line in error_lines(exc)])


def validate(model: type[M], data: Any, source: str = "<config>") -> M:
    """Build ``model`` from a mapping, turning pydantic's error into one that names the source and fields."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise UrbangenError(format_validation_error(exc, source)) from None


def load_yaml(path: str | os.PathLike[str]) -> Any:
    path = Path(path)
    if not path.is_file():
        raise UrbangenError(f"config file not found: {path}")
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UrbangenError(f"config file {path} is not valid YAML: {exc}") from None


def load_config(model: type[M], path: str | os.PathLike[str], overrides: dict[str, Any] | None = None) -> M:
    """Load ``model`` from a YAML file; ``overrides`` (already nested) replace top-level keys."""
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise UrbangenError(f"config file {path}: expected a mapping at the top level, got {type(data).__name__}")
    data.update(overrides or {})
    return validate(model, data, str(path))


def dump_yaml(model: BaseModel) -> str:
    return yaml.safe_dump(model.model_dump(mode="json"), sort_keys=False)


class Settings(BaseSettings):
    """Endpoints and credentials, read from the environment (never from committed files).

    Locally everything is optional: without MLFLOW_TRACKING_URI a sqlite store inside the workspace is
    used, without URBANGEN_S3_ENDPOINT datasets live in a local directory store.
    """

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    mlflow_tracking_uri: str | None = None
    urbangen_s3_endpoint: str | None = None
    urbangen_s3_bucket: str = "urbangen"
    urbangen_s3_secure: bool = False
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    urbangen_workspace: Path = Path("workspace")


def settings() -> Settings:
    return Settings()
