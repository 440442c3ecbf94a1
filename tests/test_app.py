"""Every page of the Streamlit app renders without an exception (Streamlit's AppTest)."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "pages").glob("*.py"))


def _app() -> AppTest:
    return AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)


def test_home_page_renders_with_device_in_sidebar():
    at = _app().run()
    assert not at.exception, at.exception
    assert at.title[0].value == "MedSyn"
    assert any("Device:" in m.value for m in at.sidebar.markdown)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders(page):
    at = _app().run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    assert at.title, f"{page} has no title"
