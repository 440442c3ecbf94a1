"""The ``medsyn`` command line: ``medsyn info`` here; each command group is a module of this package.

Each module listed in :data:`COMMAND_GROUPS` exposes ``register(subparsers)`` and keeps its heavy imports
inside the command handlers, so ``medsyn --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import traceback
from collections.abc import Sequence

from medsyn_core import __version__

#: The command-group modules of this package (each has ``register(subparsers)``).
COMMAND_GROUPS: tuple[str, ...] = (
    "medsyn_cli.tabular",
    "medsyn_cli.ehr",
    "medsyn_cli.dicom",
    "medsyn_cli.imaging",
    "medsyn_cli.audit",
    "medsyn_cli.users",
    "medsyn_cli.jobs",
    "medsyn_cli.uploads",
    "medsyn_cli.api",
    "medsyn_cli.federated",
)


class UserError(Exception):
    """An error caused by the user's input; printed without a traceback."""


def _package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def cmd_info(args: argparse.Namespace) -> int:
    """Print versions, the device, the home folder and the bundled datasets."""
    from medsyn_core import settings
    from medsyn_core.catalog import BUNDLED
    from medsyn_core.device import device_info
    from medsyn_core.storage import Store

    print(f"MedSyn {__version__} (Python {platform.python_version()}, {platform.system()})")
    for pkg in ("torch", "torchvision", "monai", "opacus", "pydicom", "nibabel", "torchmetrics",
                "streamlit", "pandas", "scikit-learn"):
        print(f"  {pkg:<13} {_package_version(pkg)}")
    print(f"Device:      {device_info().summary()}")
    home = settings.home_dir()
    with Store() as store:
        print(f"Home folder: {home} (database schema v{store.schema_version})")
    print("Bundled datasets:")
    for item in BUNDLED:
        status = "ok" if item.path.exists() else "MISSING"
        print(f"  {item.name:<16} {item.kind:<8} {item.shape}  [{status}]")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medsyn",
        description="MedSyn: synthetic medical tables and images with measured fidelity, utility and "
                    "privacy.",
    )
    parser.add_argument("--version", action="version", version=f"MedSyn {__version__}")
    parser.add_argument(
        "--device", default=None,
        help="compute device: auto (default: CUDA, then Apple MPS, then CPU), cuda, cuda:N, mps or "
             "cpu; overrides $MEDSYN_DEVICE",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    info = sub.add_parser("info", help="versions, device, home folder and bundled datasets")
    info.set_defaults(func=cmd_info)
    for module_name in COMMAND_GROUPS:
        importlib.import_module(module_name).register(sub)
    return parser


def _input_error(message) -> int:
    """Print a one-line error (the traceback too with ``MEDSYN_DEBUG=1``); exit status 2. Line breaks in
    a quoted library message are folded into spaces."""
    if os.environ.get("MEDSYN_DEBUG"):
        traceback.print_exc()
    print(f"medsyn: error: {' '.join(str(message).split())}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.device is not None:
        os.environ["MEDSYN_DEVICE"] = args.device
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    from medsyn_core.device import DeviceError
    from medsyn_core.permissions import start_service

    start_service(sys.stderr)  # umask 077; warns on stderr about a home folder others can open

    try:
        return int(args.func(args) or 0)
    except (UserError, DeviceError, FileNotFoundError, FileExistsError, ValueError, KeyError) as exc:
        # ValueError includes medsyn_core.limits.InputLimitError (a hostile or too-large input)
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        return _input_error(message)
    except OSError as exc:  # a path the user gave is a folder, unreadable, on a full disk, ...
        where = f"{exc.filename}: " if exc.filename else ""
        return _input_error(f"{where}{exc.strerror or exc}")
    except MemoryError:
        return _input_error("ran out of memory; the input is too large for this machine. Use a smaller "
                            "input (docs/security.md lists MedSyn's input limits).")
    except RecursionError:
        return _input_error("the input is nested too deeply to be processed.")
    except KeyboardInterrupt:
        print("medsyn: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # Re-import under the package name: engines raise medsyn_cli.main.UserError, which is another class
    # than __main__.UserError when this file runs as `python -m medsyn_cli.main`.
    from medsyn_cli.main import main as _package_main

    sys.exit(_package_main())
