"""Model store library: cards and ledgers read from the folders, zip download, admin-only atomic delete."""

import io
import zipfile

import pytest
from app_helpers import account

from medsyn_core import model_store, settings
from medsyn_core.auth import PermissionDenied, User
from medsyn_core.files import atomic_write_json
from medsyn_core.storage import Store

ADMIN, RITA, CLEO = User("admin", "admin"), User("rita", "researcher"), User("cleo", "clinician")


@pytest.fixture(autouse=True)
def accounts():
    """The accounts these tests act as (library entry points re-load them from the store)."""
    account("admin", "admin")
    account("rita", "researcher")
    account("cleo", "clinician")


@pytest.fixture
def trained_model():
    folder = settings.models_dir() / "heart-ctgan"
    atomic_write_json(folder / "model_card.json", {"data": {"table": "heart"}, "params": {"epochs": 1}})
    atomic_write_json(folder / "privacy_ledger.json", {"epsilon": 2.5, "delta": 1e-5})
    (folder / "weights.safetensors").write_bytes(b"\0" * 64)
    with Store() as store:
        store.register_model("heart-ctgan", "ctgan", folder, {}, dp_epsilon=2.5)
        yield store, folder


def test_list_reads_card_and_ledger_from_the_folder(trained_model):
    store, folder = trained_model
    (entry,) = [m for m in model_store.list_models(store, CLEO) if m.source == "store"]
    assert entry.card["params"] == {"epochs": 1} and entry.ledger["epsilon"] == 2.5 and entry.deletable


def test_zip_holds_the_folder_and_is_audited(trained_model):
    store, folder = trained_model
    entry = model_store.list_models(store, CLEO)[0]
    data = model_store.zip_model(store, CLEO, entry)
    names = sorted(zipfile.ZipFile(io.BytesIO(data)).namelist())
    assert names == ["heart-ctgan/model_card.json", "heart-ctgan/privacy_ledger.json",
                     "heart-ctgan/weights.safetensors"]
    assert store.audit_events()[-1]["action"] == "model_downloaded"


def test_delete_is_admin_only_removes_folder_and_row(trained_model):
    store, folder = trained_model
    for user in (RITA, CLEO):
        with pytest.raises(PermissionDenied, match="cannot delete models"):
            model_store.delete_model(store, user, "heart-ctgan")
    assert folder.is_dir() and store.list_models()
    model_store.delete_model(store, ADMIN, "heart-ctgan")
    assert not folder.exists() and store.list_models() == []
    assert list(folder.parent.iterdir()) == []  # no half-deleted leftovers
    assert store.audit_events()[-1]["action"] == "model_deleted"
    with pytest.raises(KeyError, match="No trained model"):
        model_store.delete_model(store, ADMIN, "heart-ctgan")


def test_viewing_needs_a_role():
    with Store() as store, pytest.raises(PermissionDenied, match="log in"):
        model_store.list_models(store, None)
