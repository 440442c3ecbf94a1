import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from medsyn_core.report import Figure, Metric, Report, Section, Table  # noqa: E402


def _report() -> Report:
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    r = Report("Test report", "tabular", inputs={"real rows": 303})
    r.add(Section("fidelity", "Fidelity", "Looks alike.",
                  metrics=[Metric("quality", "Quality score", 0.87, "Mean of shapes and trends.",
                                  good=True, reference=1.0, reference_label="identical data"),
                           Metric("nan", "Undefined", float("nan"), "Not computable here.")],
                  tables=[Table("cols", "Per column", [{"column": "age", "score": 0.9}])],
                  figures=[Figure.from_matplotlib("line", "A <line>", fig)]))
    r.warnings.append("3% of synthetic rows are exact copies of real rows.")
    return r


def test_json_round_trip_and_nan_is_null(tmp_path):
    r = _report()
    path = r.save(tmp_path / "r.json")
    data = json.loads(path.read_text())
    assert data["sections"][0]["metrics"][1]["value"] is None
    back = Report.from_dict(data)
    assert back.section("fidelity").metric("quality").value == 0.87
    assert back.section("fidelity").figures[0].png_bytes.startswith(b"\x89PNG")


def test_html_is_self_contained_and_escaped(tmp_path):
    text = _report().save(tmp_path / "r.html").read_text()
    assert "data:image/png;base64," in text
    assert "A &lt;line&gt;" in text and "exact copies" in text
    assert "<script" not in text and "src='http" not in text and "<link" not in text


def test_bad_suffix_and_duplicate_section():
    r = _report()
    with pytest.raises(ValueError, match=r"\.json or \.html"):
        r.save("report.pdf")
    with pytest.raises(ValueError, match="already has"):
        r.add(Section("fidelity", "Again"))
