"""Write the OpenAPI schema of the API: ``python -m medsyn_api.openapi docs/openapi.json`` (``make openapi``).
``tests/test_api_openapi.py`` fails when the checked-in file is stale."""

from __future__ import annotations

import json
import sys


def schema_text() -> str:
    """The OpenAPI document as stable, indented JSON (what docs/openapi.json holds)."""
    from medsyn_api.app import create_app
    from medsyn_api.config import ApiConfig

    return json.dumps(create_app(ApiConfig()).openapi(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    from medsyn_core.files import atomic_write_text

    out = argv[0] if argv else "docs/openapi.json"
    atomic_write_text(out, schema_text())
    print(f"Wrote the OpenAPI schema to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
