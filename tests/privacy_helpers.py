"""Shared by the privacy attack tests (flat tables and EHR): every saved field of a model folder."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file


def saved_fields(folder: Path) -> dict[str, object]:
    """Every leaf of every file in a model folder: JSON values by path, tensors by name, other bytes."""
    out: dict[str, object] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}/{k}", v)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(f"{prefix}[{i}]", v)
        else:
            out[prefix] = value

    for path in sorted(Path(folder).rglob("*")):
        if path.suffix == ".json":
            walk(path.name, json.loads(path.read_text()))
        elif path.suffix == ".safetensors":
            for k, v in load_file(str(path)).items():
                out[f"{path.name}/{k}"] = v.numpy().tobytes()
        elif path.is_file():
            out[path.name] = path.read_bytes()
    return out
