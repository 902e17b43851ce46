"""All service configuration, from the environment (prefix PIXSCAPE_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    # An empty variable (PIXSCAPE_ADMIN_KEY=) means unset, never "the empty key".
    model_config = SettingsConfigDict(env_prefix="PIXSCAPE_", frozen=True, env_ignore_empty=True)

    data_dir: Path = Field(Path("data"), description="folder holding CURRENT and snapshots/")
    host: str = "127.0.0.1"
    port: int = 8000
    max_upload_bytes: int = Field(25 * 1024 * 1024, ge=1024)
    max_pixels: int = Field(80_000_000, ge=1)
    body_timeout: float = Field(
        10.0, gt=0, description="seconds a request may take to send its body; then 408"
    )
    max_export_bytes: int = Field(
        2 * 1024**3, ge=0, description="a zip export's files in all, at most (bytes)"
    )
    default_k: int = Field(20, ge=1)
    workers: int = Field(2, ge=1, description="threads for decode, inference and search")
    inference_threads: int = Field(1, ge=0, description="onnxruntime threads per query")
    reload_interval_s: float = Field(1.0, gt=0, description="how often CURRENT is checked")
    web_dir: Path | None = Field(None, description="static page folder (default: bundled web/)")
    queue_limit: int = Field(
        16, ge=0, description="requests that may wait for a worker; beyond it: 503 at once"
    )
    read_key: SecretStr | None = Field(
        None, description="if set, every /api route but health needs this key (or the admin key)"
    )
    admin_key: SecretStr | None = Field(
        None, description="admin routes need it; without it they are switched off"
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="origins allowed to call the API from a browser"
    )

    @field_validator("read_key", "admin_key")
    @classmethod
    def _not_blank(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and not key.get_secret_value().strip():
            raise ValueError("an API key must not be blank (leave it unset to switch it off)")
        return key
