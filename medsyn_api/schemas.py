"""Request bodies of the API (pydantic): types, ranges and the options of the CLI, checked before any
library call. Unknown fields are refused (a typo such as ``epsilom`` would otherwise train without DP)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TokenRequest(Body):
    username: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1000)
    label: str = Field("", max_length=64, description="what the token is for")
    days: float | None = Field(None, gt=0, description="life of the token (default 1 day, at most 30)")


class TabularFit(Body):
    """``medsyn tabular fit`` as a background job. ``dataset``: a bundled table's name (``heart_cleveland``)
    or the id of an uploaded one."""

    dataset: str = Field(min_length=1, max_length=100)
    name: str = Field(min_length=1, max_length=64, description="model name (a safe slug)")
    model: Literal["ctgan", "tvae"] = "ctgan"
    epochs: int = Field(300, ge=1, le=100_000)
    batch_size: int = Field(500, ge=2, le=100_000)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    schema_: dict[str, Any] | None = Field(None, alias="schema",
                                           description="schema/metadata overrides (schema-file layout)")
    phi: dict[str, str] | None = Field(None, description="PHI action per column (drop, keep, year, ...)")
    preset: Literal["strict", "balanced", "exploratory", "off"] | None = None
    epsilon: float | None = Field(None, gt=0, le=1000, description="total ε (DP on when given)")
    delta: float | None = Field(None, gt=0, lt=1)
    clip: float = Field(1.0, gt=0, le=1000, description="per-sample gradient clipping norm")
    metadata: dict[str, Any] | None = Field(None, description="public bounds/categories (schema-file layout)")
    use_bundled_metadata: bool = Field(True, description="under DP, a bundled table's public metadata")
    replace: bool = False
    keep_upload: bool = False

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Sample(Body):
    n: int = Field(ge=1, le=1_000_000)
    conditions: list[str] = Field(default_factory=list, max_length=50)
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    format: Literal["csv", "json", "parquet"] = "csv"
    raw: bool = Field(False, description="CSV cells as they are (not spreadsheet-safe)")


class ImagingTrain(Body):
    """``medsyn imaging train`` as a background job on a bundled image set."""

    data: Literal["pneumoniamnist", "breastmnist"]
    name: str = Field(min_length=1, max_length=64)
    model: Literal["stylegan2", "dcgan"] = "stylegan2"
    resolution: Literal[32, 64, 128, 256] = 32
    kimg: float = Field(20.0, gt=0, le=25_000)
    batch: int = Field(32, ge=2, le=256)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    lr: float | None = Field(None, gt=0, le=1)
    channel_base: int | None = Field(None, ge=64, le=32768)
    channel_max: int | None = Field(None, ge=16, le=1024)
    diffaugment: str = Field("color,translation,cutout", max_length=100)
    preset: Literal["strict", "balanced", "exploratory", "off"] | None = None
    epsilon: float | None = Field(None, gt=0, le=1000)
    delta: float | None = Field(None, gt=0, lt=1)
    clip: float = Field(1.0, gt=0, le=1000)
    replace: bool = False


class ImageSample(Body):
    n: int = Field(16, ge=1, le=1000)
    label: str | None = Field(None, max_length=100)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    truncation: float = Field(1.0, gt=0, le=1)
    format: Literal["png", "dicom", "nifti"] = "png"


class TabularEvaluation(Body):
    """Evaluate ``n`` rows sampled from ``model`` against the real ``dataset`` (and a ``holdout``)."""

    model: str = Field(min_length=1, max_length=64)
    dataset: str = Field(min_length=1, max_length=100)
    target: str = Field(min_length=1, max_length=200)
    holdout: str | None = Field(None, max_length=100)
    n: int | None = Field(None, ge=10, le=200_000, description="rows to sample (default: as many as real)")
    seed: int = Field(0, ge=0, le=2**31 - 1)
    format: Literal["json", "html"] = "json"
    figures: bool = False
