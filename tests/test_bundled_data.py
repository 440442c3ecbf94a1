import numpy as np
import pydicom
import pytest

from medsyn_core.catalog import BUNDLED, bundled
from medsyn_imaging.io.datasets import bundled_dicom_series_dir, load_medmnist
from medsyn_tabular.data.datasets import heart_cleveland_dictionary, load_heart_cleveland


def test_every_bundled_dataset_exists_and_has_provenance():
    readme = (BUNDLED[0].path.parents[1] / "README.md").read_text(encoding="utf-8")
    for item in BUNDLED:
        assert item.path.exists(), item.path
        assert item.relpath.split("/")[-1] in readme, f"{item.name} has no provenance line"


def test_heart_table_shape_and_missing_cells():
    df = load_heart_cleveland()
    assert df.shape == (303, 14)
    assert list(df.columns)[-1] == "num"
    assert int(df.isna().sum().sum()) == 6
    assert df["ca"].isna().sum() == 4 and df["thal"].isna().sum() == 2
    dictionary = heart_cleveland_dictionary()
    assert [c["name"] for c in dictionary["columns"]] == list(df.columns)


@pytest.mark.parametrize("name,sizes", [
    ("pneumoniamnist", (4708, 524, 624)),
    ("breastmnist", (546, 78, 156)),
])
def test_medmnist_shapes(name, sizes):
    ds = load_medmnist(name)
    for split, n in zip(("train", "val", "test"), sizes, strict=True):
        assert ds.images[split].shape == (n, 28, 28)
        assert ds.images[split].dtype == np.uint8
        assert ds.labels[split].shape == (n,)
    assert ds.n_classes == 2 and ds.n_channels == 1


def test_medmnist_bad_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "x.npz"
    np.savez(bad, train_images=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="lacks the MedMNIST keys"):
        load_medmnist(bad)
    with pytest.raises(KeyError, match="Available"):
        bundled("nope")


def test_bundled_dicom_series_files():
    files = sorted(bundled_dicom_series_dir().glob("*.dcm"))
    assert len(files) == 150
    ds = pydicom.dcmread(files[0])
    assert ds.pixel_array.shape == (64, 64)
    assert len({pydicom.dcmread(f, stop_before_pixels=True).SeriesInstanceUID for f in files}) == 1
