import subprocess
import sys
from pathlib import Path

from medsyn_cli.main import main
from medsyn_core import __version__


def test_help_and_version(capsys):
    assert main([]) == 0
    assert "medsyn" in capsys.readouterr().out
    out = subprocess.run([sys.executable, "-m", "medsyn_cli.main", "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert "info" in out and "--device" in out


def test_info_reports_versions_device_home_and_data(medsyn_home, capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"MedSyn {__version__}" in out
    assert "torch" in out and "Device:" in out
    assert str(medsyn_home.resolve()) in out
    for name in ("heart_cleveland", "pneumoniamnist", "breastmnist", "ge_mr_fmri"):
        assert name in out
    assert "MISSING" not in out


def test_bad_device_flag_is_a_readable_error(capsys):
    assert main(["--device", "gpu", "info"]) == 2
    assert "Unknown device" in capsys.readouterr().err


def test_console_script_is_installed():
    script = Path(sys.executable).with_name("medsyn")
    assert script.exists(), "run `make test` (it installs the package) before the tests"
    out = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=True)
    assert __version__ in out.stdout


def test_engines_and_core_import_without_streamlit():
    """Every library module (all but the two app-only view helpers) imports without Streamlit."""
    code = (
        "import importlib, pkgutil, sys\n"
        "import medsyn_core, medsyn_tabular, medsyn_imaging\n"
        "app_only = {'medsyn_app.report_view', 'medsyn_app.session'}\n"
        "for pkg in (medsyn_core, medsyn_tabular, medsyn_imaging):\n"
        "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        if m.name not in app_only and not m.name.endswith('__main__'):\n"
        "            importlib.import_module(m.name)\n"
        "print('streamlit' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_users_token_create_list_revoke(medsyn_home, capsys):
    from app_helpers import account

    from medsyn_core import auth
    from medsyn_core.storage import Store

    account("rita", "researcher")
    assert main(["users", "token", "create", "rita", "--label", "nightly", "--days", "7"]) == 0
    captured = capsys.readouterr()
    secret = captured.out.strip()
    assert secret.startswith("msy_") and "shown once" in captured.err
    with Store() as store:
        assert auth.authenticate_token(store, secret).username == "rita"
        assert secret not in str(store.list_tokens()) and secret not in str(store.audit_events())
    assert main(["users", "token", "list"]) == 0
    listing = capsys.readouterr().out
    assert "rita" in listing and "nightly" in listing and "active" in listing and secret not in listing
    assert main(["users", "token", "revoke", "1"]) == 0
    assert main(["users", "token", "revoke", "1"]) == 2
    assert "already revoked" in capsys.readouterr().err
    assert main(["users", "token", "create", "nobody"]) == 2
    assert "No active account" in capsys.readouterr().err
