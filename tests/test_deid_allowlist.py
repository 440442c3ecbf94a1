"""Allowlist de-identification (PS3.15 Table E.1-1): planted identifiers, options, burned-in pixels."""

from __future__ import annotations

import pydicom
import pytest
from deid_crafted import encodings_of, write_crafted

from medsyn_core.cli import main


@pytest.mark.parametrize("charset", ["ISO_IR 192", "ISO_IR 100"])
def test_no_planted_identifier_survives_the_cli_bytewise(tmp_path, capsys, charset):
    source = tmp_path / "in" / "crafted.dcm"
    source.parent.mkdir()
    planted = write_crafted(source, charset)
    assert len(planted) >= 40
    raw = source.read_bytes()
    assert all(any(e in raw for e in encodings_of(value)) for value in planted), "planting failed"
    assert main(["dicom", "deidentify", str(source.parent), str(tmp_path / "out")]) == 0
    written = list((tmp_path / "out").rglob("*.dcm"))
    assert len(written) == 1, capsys.readouterr()
    data = written[0].read_bytes()
    survivors = sorted(value for value in planted if any(e in data for e in encodings_of(value)))
    assert survivors == [], f"{len(survivors)} of {len(planted)} planted identifiers survived: {survivors}"
    assert data[:128] == b"\0" * 128 and data[128:132] == b"DICM"
    ds = pydicom.dcmread(written[0])
    assert ds.PatientIdentityRemoved == "YES"
    assert [c.CodeValue for c in ds.DeidentificationMethodCodeSequence] == ["113100"]
    assert ds.LongitudinalTemporalInformationModified == "REMOVED"
    assert ds.pixel_array.shape == (16, 16)
    assert (ds.pixel_array == pydicom.dcmread(source).pixel_array).all()
