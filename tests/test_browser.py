"""Real-browser end-to-end test: Debian's chromium driven by Playwright against ``streamlit run app.py``.

Needs ``/usr/bin/chromium`` (Debian packages ``chromium`` and ``chromium-driver``, installed by
``.ci/run``); Playwright is used only as the driver (never ``playwright install``, nothing is
downloaded). The server runs on a free localhost port with a temporary MEDSYN_HOME; screenshots go to
a temporary folder, or to ``$MEDSYN_SCREENSHOT_DIR`` when set (``MEDSYN_SCREENSHOT_DIR=docs/screenshots``
refreshes the README's pictures).

The journey is a list of steps (:data:`STEPS`) sharing one :class:`Journey`; to add the engine steps
("train a tiny tabular model, sample, download the CSV", "export a DICOM zip from the demo model"),
write a ``step_...(j)`` function with the helpers below and insert it into the list.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(os.environ.get("MEDSYN_SCREENSHOT_DIR") or tempfile.mkdtemp(prefix="medsyn-shots-"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ADMIN_PW = "admin-pass-e2e-1"
USERS = {"rita": ("researcher", "rita-pass-e2e-1"), "cleo": ("clinician", "cleo-pass-e2e-1")}
TIMEOUT_MS = 60_000

if os.environ.get("CI") and not CHROMIUM.exists():
    raise RuntimeError("CI must run the browser test: /usr/bin/chromium is missing (.ci/run installs it)")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="needs Debian chromium (/usr/bin/chromium); .ci/run installs it")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path, what: str) -> None:
    deadline = time.time() + 60
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            pytest.fail(f"{what} did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)


@contextlib.contextmanager
def streamlit_server(tmp_path: Path, port: int | None = None, extra_args: tuple[str, ...] = (),
                     extra_env: dict[str, str] | None = None):
    """``streamlit run app.py`` on a free port with MEDSYN_HOME = tmp_path/home; yields (url, log)."""
    port = port or _free_port()
    log = tmp_path / "streamlit.log"
    # one thread per job process: small models on a shared CPU train many times faster than with several
    env = dict(os.environ, MEDSYN_HOME=str(tmp_path / "home"), MEDSYN_DEVICE="cpu", OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1", **(extra_env or {}))
    env.pop("MEDSYN_ADMIN_PASSWORD", None)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "serve.py", "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true",
             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none", *extra_args],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(f"{url}/_stcore/health", proc, log, "streamlit")
        yield url, log
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def server(tmp_path):
    """The app on a free port with an empty MEDSYN_HOME; yields (url, log path)."""
    with streamlit_server(tmp_path) as running:
        yield running


@pytest.fixture
def page(tmp_path):
    from playwright.sync_api import sync_playwright

    profile = tmp_path / "chromium-profile"  # a new, empty user-data-dir
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1400, "height": 900}, accept_downloads=True)
        context.set_default_timeout(TIMEOUT_MS)
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()
    shutil.rmtree(profile, ignore_errors=True)


@dataclass
class Journey:
    """The browser page plus helpers that speak Streamlit's widgets."""

    page: object
    url: str
    shots: list[Path] = field(default_factory=list)
    home: Path | None = None  # the server's MEDSYN_HOME, for steps that act as another user meanwhile

    def see(self, text: str, exact: bool = False):
        loc = self.page.get_by_text(text, exact=exact).first
        loc.wait_for(state="visible")
        return loc

    def heading(self, text: str):
        from playwright.sync_api import expect

        expect(self.page.get_by_role("heading", name=text, exact=True).first).to_be_visible()

    def fill(self, label: str, value: str) -> None:
        box = self.page.get_by_label(label, exact=True)
        box.fill(value)
        box.press("Tab")

    def settle(self) -> None:
        """Wait until Streamlit has finished the current script run (its "Running…" widget is gone),
        so that a click is not swallowed by a rerun in flight."""
        self.page.wait_for_timeout(300)
        self.page.locator('[data-testid="stStatusWidget"]').wait_for(state="detached", timeout=TIMEOUT_MS)

    def click(self, name: str) -> None:
        self.settle()
        self.page.get_by_role("button", name=name, exact=True).first.click()

    def choose(self, label: str, option: str, exact: bool = True) -> None:
        """Pick ``option`` in the Streamlit selectbox labelled ``label``."""
        box = self.page.locator('[data-testid="stSelectbox"]').filter(
            has=self.page.get_by_text(label, exact=True))
        choice = self.page.get_by_role("option", name=option, exact=exact).first
        for attempt in range(3):  # a script run that ends meanwhile re-renders the box and closes its menu
            self.settle()
            box.locator("input").first.click()
            try:
                choice.wait_for(state="visible", timeout=10_000)
                choice.click(timeout=10_000)
                return
            except Exception:
                if attempt == 2:
                    raise
                self.page.keyboard.press("Escape")

    def nav(self, title: str) -> None:
        """Open a page from the sidebar menu (the same browser session, so the login stays)."""
        self.page.locator('[data-testid="stSidebarNav"]').get_by_text(title, exact=True).click()
        self.heading(title)

    def nav_count(self) -> int:
        """Links in the sidebar menu (0 before login: only the login page exists)."""
        self.settle()
        return self.page.locator('[data-testid="stSidebarNav"] a').count()

    def reload_keeps_session(self, username: str) -> None:
        """Reload the browser tab (a new Streamlit session): the session cookie logs the user back in."""
        for _ in range(100):  # the page posts its login ticket right after the login: wait for the cookie
            if any(c["name"] == "medsyn_session" and c["httpOnly"] for c in self.page.context.cookies()):
                break
            self.page.wait_for_timeout(100)
        else:
            raise AssertionError("no HttpOnly session cookie was set after the login")
        self.page.reload()
        sidebar = self.page.locator('[data-testid="stSidebar"]')
        sidebar.get_by_text("Log out", exact=True).wait_for(state="visible")
        assert sidebar.get_by_text(username).count() >= 1
        assert self.page.get_by_role("heading", name="MedSyn — log in", exact=True).count() == 0

    def nav_titles(self) -> list[str]:
        texts = self.page.locator('[data-testid="stSidebarNav"] a').all_inner_texts()
        return [t.strip().splitlines()[-1].strip() for t in texts]  # the icon's name comes first

    def login(self, username: str, password: str) -> None:
        self.heading("MedSyn — log in")
        self.settle()  # the previous page's widgets (the Users page also has "Username") fade out first
        self.fill("Username", username)
        self.fill("Password", password)
        self.click("Log in")
        sidebar = self.page.locator('[data-testid="stSidebar"]')
        sidebar.get_by_text("Log out", exact=True).wait_for(state="visible")
        sidebar.get_by_text(username).first.wait_for(state="visible")

    def logout(self) -> None:
        self.click("Log out")
        self.heading("MedSyn — log in")

    def shot(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.wait_for_timeout(500)  # let Streamlit finish fading in the last elements
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        self.shots.append(path)


def step_first_run_creates_admin(j: Journey) -> None:
    """Admin: before login only the login page exists (no page listed, a bookmarked page shows the login);
    the login names the first admin; a reload keeps the session."""
    j.page.goto(j.url)
    j.heading("MedSyn — first run")
    assert j.nav_count() == 0
    j.fill("Password (at least 10 characters)", ADMIN_PW)
    j.fill("Repeat the password", ADMIN_PW)
    j.click("Create admin")
    j.heading("MedSyn")
    j.see("Bundled datasets")
    j.logout()
    assert j.nav_count() == 0
    j.see("the admin account is called", exact=False)  # nobody has logged in yet: the page says who
    j.page.goto(f"{j.url}/audit")  # a bookmarked page before login: the login page, nothing else
    j.heading("MedSyn — log in")
    assert j.nav_count() == 0 and j.page.get_by_text("Not logged in").count() == 0
    j.shot("login")
    j.fill("Username", "admin")
    j.fill("Password", "not-the-password")
    j.click("Log in")
    j.see("Wrong username or password.")
    j.shot("login_refused")
    j.login("admin", ADMIN_PW)
    j.reload_keeps_session("admin")


def step_admin_creates_accounts_and_a_refused_form_keeps_what_was_typed(j: Journey) -> None:
    j.nav("Users")
    j.fill("Username", "rita")
    j.choose("Role", "researcher")
    j.fill("Initial password (at least 10 characters)", "short")
    j.click("Create account")
    j.see("Passwords need at least 10 characters.")
    assert j.page.get_by_label("Username", exact=True).input_value() == "rita"  # kept, not cleared
    role = j.page.locator('[data-testid="stSelectbox"]').filter(has=j.page.get_by_text("Role", exact=True))
    assert "researcher" in role.first.inner_html()  # not reset to clinician
    j.shot("users_refused_kept")
    j.fill("Initial password (at least 10 characters)", USERS["rita"][1])
    j.click("Create account")
    j.see("Created rita (researcher).")
    j.fill("Username", "cleo")
    j.choose("Role", "clinician")
    j.fill("Initial password (at least 10 characters)", USERS["cleo"][1])
    j.click("Create account")
    j.see("Created cleo (clinician).")
    j.shot("users")
    j.logout()


def step_researcher_trains_dp_with_the_defaults_on_the_heart_table(j: Journey) -> None:
    """Researcher: DP with the defaults trains (batch 500 on 303 rows used to be refused); the plan is
    shown before the job; the report names model and ε and measures membership on the holdout."""
    import pandas as pd

    j.login("rita", USERS["rita"][1])
    titles = j.nav_titles()
    assert "Evaluation" in titles and "Jobs" in titles and "Audit" not in titles, titles
    j.nav("Tabular")
    j.see("Schema and identifiers", exact=True)
    j.see("Training on 242 rows; 61 rows kept back", exact=False)  # the holdout, by default
    j.choose("Model", "tvae")
    j.choose("Preset", "strict")
    j.see("The plan", exact=False).scroll_into_view_if_needed()  # chosen from n and ε, before any job
    j.fill("Model name", "e2e-heart-dp")
    j.shot("tabular_dp_plan")
    j.click("Train")  # a background job in the server's worker process; the page polls it
    j.page.get_by_text("saved as", exact=False).first.wait_for(state="visible", timeout=400_000)
    j.see("Chosen for you: batch_size 10", exact=False)
    j.see("DP: ε", exact=False)
    j.fill("Rows", "200")
    j.click("Generate")
    button = j.page.get_by_role("button", name="Download CSV")
    button.wait_for(state="visible")
    j.shot("tabular_sampled")
    with j.page.expect_download() as info:
        button.click()
    rows = pd.read_csv(info.value.path())
    real_columns = pd.read_csv(ROOT / "data" / "tabular" / "heart_cleveland.csv", nrows=1).columns
    assert len(rows) == 200 and list(rows.columns) == list(real_columns)
    j.click("Evaluate")
    j.see("Privacy: can a real patient be found", exact=False)
    j.see("e2e-heart-dp", exact=False)  # the report's header names the model …
    j.see("differential privacy:", exact=False).scroll_into_view_if_needed()  # … and its ε (and δ)
    j.see("ε = 0.9", exact=False)  # strict: ε = 1, of which the ledger recomputes about 0.999
    j.see("61 real rows kept back from training", exact=False)
    j.shot("tabular_report_holdout")
    with j.page.expect_download() as info:
        j.page.get_by_role("button", name="Download JSON").first.click()
    report = json.loads(Path(info.value.path()).read_text())
    privacy = next(s for s in report["sections"] if s["key"] == "privacy")
    auc = next(m for m in privacy["metrics"] if m["key"] == "mia_distance_auc")["value"]
    assert auc is not None and 0.0 <= auc <= 1.0  # measured against the holdout, not "n/a"
    assert report["context"]["model"] == "e2e-heart-dp"
    assert 0.9 < float(report["context"]["privacy"].split()[2]) <= 1.0  # 'ε = 0.999 (δ = 9e-06)'
    assert "epsilon" not in report["context"] and report["context"]["privacy_unit"]
    assert report["inputs"]["holdout rows"] == 61


def messy_table(n: int = 120):
    """Weight with a unit and 'unknown', a lab value with decimal commas: how clinics export tables."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "age": rng.integers(20, 90, n),
        "weight": [f"{w} kg" if i % 17 else "unknown" for i, w in enumerate(rng.integers(50, 110, n))],
        "crp": [f"{v:.1f}".replace(".", ",") for v in rng.uniform(0.1, 9.9, n)],
        "outcome": rng.integers(0, 2, n)})


def step_researcher_fixes_a_messy_csv_and_xlsx_and_trains(j: Journey) -> None:
    """Units, decimal commas and 'unknown' are offered one-click fixes; .xlsx is read; the data profile is
    shown; the previous table's model, sample and report leave the screen with the new upload."""
    table = messy_table()
    folder = j.home.parent / "uploads-e2e"
    folder.mkdir(exist_ok=True)
    table.to_csv(folder / "messy.csv", sep=";", index=False)
    table.to_excel(folder / "messy.xlsx", index=False)
    from playwright.sync_api import expect

    j.page.get_by_text("Upload a file", exact=True).click()
    j.settle()
    expect(j.page.get_by_text("saved as", exact=False)).to_have_count(0)  # the last table's results go
    expect(j.page.get_by_role("button", name="Download CSV")).to_have_count(0)
    j.page.locator('[data-testid="stFileUploader"] input[type=file]').first.set_input_files(
        str(folder / "messy.csv"))
    j.see("Messy columns", exact=True)
    j.see("values are numbers written with a unit", exact=False)
    j.see("decimal commas", exact=False)
    j.page.locator('[data-testid="stFileUploader"] input[type=file]').first.set_input_files(
        str(folder / "messy.xlsx"))
    j.see("messy.xlsx", exact=False)
    j.see("Messy columns", exact=True)
    radios = j.page.locator('[data-testid="stRadio"]').filter(has_text="read as numbers")
    radios.nth(0).get_by_text("read as numbers (others missing)").click()  # weight: the offered fix
    radios.nth(1).get_by_text("read as numbers (others missing)").click()  # crp
    j.settle()
    j.see("cells read as numbers", exact=False)
    j.see("Data profile", exact=False)
    j.fill("Epochs", "2")
    j.fill("Batch size", "50")
    j.fill("Model name", "e2e-messy")
    j.see("Messy columns", exact=True).scroll_into_view_if_needed()
    j.shot("tabular_messy_fixed")
    j.click("Train")
    j.page.get_by_text("saved as", exact=False).first.wait_for(state="visible", timeout=300_000)
    schema = json.loads((j.home / "models" / "e2e-messy" / "schema.json").read_text())
    kinds = {c["name"]: c["kind"] for c in schema["columns"]}
    assert kinds["weight"] in ("integer", "continuous") and kinds["crp"] == "continuous", kinds


def step_jobs_table_then_a_researcher_disabled_meanwhile_is_logged_out(j: Journey) -> None:
    """The Jobs page is a table with progress; its live refresh re-checks the session, so a researcher
    disabled by an admin is logged out without touching the page (issue 20)."""
    from medsyn_core import auth
    from medsyn_core.storage import Store

    j.nav("Jobs")
    j.see("Open the model store")  # the finished training job's link to its result
    job = j.page.locator('[data-testid="stSelectbox"]').filter(has=j.page.get_by_text("Job", exact=True))
    assert "table generator training · finished" in job.first.inner_html()  # (the table is a canvas)
    assert j.page.get_by_text("example", exact=False).count() == 0  # the self-test job is admins' only
    j.shot("jobs")
    with Store(j.home / "medsyn.sqlite3") as store:
        admin = auth.load_user(store, "admin")
        auth.set_active(store, admin, "rita", False)
    try:
        j.page.get_by_role("heading", name="MedSyn — log in", exact=True).wait_for(timeout=30_000)
        j.see("the account was disabled", exact=False)
    finally:
        with Store(j.home / "medsyn.sqlite3") as store:
            auth.set_active(store, admin, "rita", True)


def step_clinician_cannot_reach_training(j: Journey) -> None:
    j.login("cleo", USERS["cleo"][1])
    titles = j.nav_titles()
    assert titles == ["Home", "Tabular", "EHR", "Imaging", "Synthetic scans", "Model store"], titles
    j.nav("Tabular")
    j.see("Not allowed: the clinician role cannot train models")
    j.choose("Saved model", "e2e-heart-dp", exact=False)
    j.see("Trained on heart_cleveland", exact=False)  # the researcher's saved model, offered for sampling
    assert j.page.get_by_role("button", name="Download CSV").count() == 0  # nothing left from rita
    assert j.page.get_by_role("button", name="Train", exact=True).count() == 0
    j.shot("clinician_refused_training")


def step_clinician_opens_imaging_viewer(j: Journey) -> None:
    j.nav("Imaging")
    j.choose("Dataset", "ge_mr_fmri", exact=False)
    j.see("Time point")
    j.see("5 x 3.75 x 3.75 mm")  # voxel size of the de-identified GE MR series
    j.see("Voxel size:")
    j.shot("imaging_viewer")


def step_clinician_scrolls_three_planes_of_a_series(j: Journey) -> None:
    """Issue 18: the slice viewer renders the axial, coronal and sagittal planes of the bundled MR series
    (pre-rendered, cached), with their geometry, and a slider scrolls one plane."""
    j.nav("Imaging")  # the clinician of the previous steps, still logged in
    j.choose("Dataset", "ge_mr_fmri", exact=False)
    j.see("Slice viewer: axial, coronal, sagittal")
    for caption in ("Axial 8/15 · 5 mm slices · 3.75 x 3.75 mm pixels · top A, left R",
                    "Coronal 32/64 · 3.75 mm slices · 5 x 3.75 mm pixels · top S, left R",
                    "Sagittal 32/64 · 3.75 mm slices · 5 x 3.75 mm pixels · top S, left A"):
        j.see(caption)
    j.see("orientation LPS", exact=False)
    images = j.page.locator('[data-testid="stImage"] img')
    images.nth(3).wait_for(state="visible")
    sizes = images.evaluate_all("imgs => imgs.map(i => [i.naturalWidth, i.naturalHeight])")
    assert len(sizes) >= 4 and all(w > 100 and h > 50 for w, h in sizes[-3:]), sizes  # the three planes
    slider = j.page.get_by_role("slider").nth(2)  # time point, slice, then the axial slider
    slider.focus()
    j.page.keyboard.press("ArrowRight")
    j.see("Axial 9/15", exact=False)
    j.shot("slice_viewer_three_planes")


def preview_tiles(j: Journey, n_rows: int, per_row: int, side: int = 28):
    """The previewed images as the browser received them: the preview PNG cut into its tiles and
    reduced back by the nearest-neighbour scale it was shown at."""
    import io
    import urllib.parse

    import numpy as np
    from PIL import Image

    image = j.page.locator('[data-testid="stImage"] img').first
    image.wait_for(state="visible")
    src = image.get_attribute("src")
    served = j.page.request.get(urllib.parse.urljoin(j.url + "/", src)).body()
    grid = np.asarray(Image.open(io.BytesIO(served)))
    scale = (grid.shape[1] - 2) // per_row - 2
    assert scale % side == 0, (grid.shape, scale)
    step = scale // side
    tiles = []
    for r in range(n_rows):
        for c in range(per_row):
            y, x = 2 + r * (scale + 2), 2 + c * (scale + 2)
            tiles.append(grid[y:y + scale:step, x:x + scale:step])
    return tiles, step


def step_clinician_exports_exactly_the_previewed_images_as_dicom(j: Journey) -> None:
    """Clinician: only generators that pass the quality bar (or are approved) are offered, with their
    FID and ε; no training tab; the preview is large (nearest-neighbour), and the exported DICOM pixels
    equal the previewed ones, as Secondary Capture with modality, pixel spacing and window."""
    import pydicom

    j.nav("Synthetic scans")
    j.see("FID 46.2 (real-vs-real floor 11.3)", exact=False)  # quality and privacy on the label
    tabs = j.page.get_by_role("tab").all_inner_texts()  # no tab this role cannot use
    assert [t.strip() for t in tabs] == ["Preview and export", "3D volumes"], tabs
    assert j.page.get_by_text("e2e-dp-gan", exact=False).count() == 0  # not evaluated, not approved
    tiles, step = preview_tiles(j, n_rows=2, per_row=4)
    assert step >= 5  # 28-pixel scans shown at 140 pixels or more
    j.click("Export the 8 previewed images")  # DICOM by default
    button = j.page.get_by_role("button", name="Download synthetic-", exact=False).first
    button.wait_for(state="visible")
    j.page.locator('[data-testid="stImage"]').first.scroll_into_view_if_needed()
    j.shot("clinician_dicom_export")
    with j.page.expect_download() as info:
        button.click()
    with zipfile.ZipFile(Path(info.value.path())) as zf:
        names = sorted(n for n in zf.namelist() if n.endswith(".dcm"))
        assert len(names) == 8, zf.namelist()
        datasets = [pydicom.dcmread(zf.open(n)) for n in names]
    assert all(ds.SeriesDescription.startswith("SYNTHETIC") for ds in datasets)
    assert {ds.SeriesInstanceUID for ds in datasets} == {datasets[0].SeriesInstanceUID}
    assert all(ds.SOPClassUID == pydicom.uid.SecondaryCaptureImageStorage for ds in datasets)
    assert {ds.Modality for ds in datasets} == {"DX"}
    assert all(float(ds.PixelSpacing[0]) > 1 and float(ds.WindowWidth) == 256 for ds in datasets)
    for ds, tile in zip(datasets, tiles, strict=True):
        assert (ds.pixel_array == tile).all()  # exactly the previewed pixels
    j.logout()


def step_model_store_shows_the_privacy_of_every_kind_of_model(j: Journey) -> None:
    """A DP tabular model and a DP image generator (tiny, trained here into the server's home) and the
    bundled demo: the Model store page shows ε, δ, parameters and metrics from the one card schema."""
    import os

    import torch

    from medsyn_imaging.training.gan_training import GANTrainer, TrainConfig
    from medsyn_imaging.training.generator_store import save_generator
    from medsyn_tabular.data.datasets import heart_cleveland_metadata, load_heart_cleveland
    from medsyn_tabular.synthesizer import TabularSynthesizer

    before, threads = os.environ.get("MEDSYN_HOME"), torch.get_num_threads()
    os.environ["MEDSYN_HOME"] = str(j.home)
    torch.set_num_threads(1)
    try:
        tab = TabularSynthesizer("tvae", epochs=1, batch_size=50, epsilon=3.0,
                                 metadata=heart_cleveland_metadata()).fit(load_heart_cleveland())
        tab.save(name="e2e-dp-tvae", actor="rita")
        from test_imaging_generator import TINY_SG2, toy_set

        gan = GANTrainer(toy_set(64), TrainConfig(kimg=0.04, batch_size=8, checkpoint_kimg=0, grid_kimg=0,
                                                  arch=dict(TINY_SG2), dp_epsilon=5.0))
        gan.train()
        save_generator(gan, j.home / "models" / "e2e-dp-gan", name="e2e-dp-gan", actor="rita")
    finally:
        torch.set_num_threads(threads)
        if before is None:
            os.environ.pop("MEDSYN_HOME", None)
        else:
            os.environ["MEDSYN_HOME"] = before
    expected = {"e2e-dp-tvae": f"{tab.ledger.total()[0]:.3g}",
                "e2e-dp-gan": f"{gan.privacy_ledger().total()[0]:.3g}"}
    j.login("rita", USERS["rita"][1])
    j.nav("Model store")
    for name, eps in expected.items():
        j.choose("Model", name)
        j.see("ε spent", exact=True)
        j.page.get_by_text(eps, exact=True).first.wait_for(state="visible")
        j.see("Protected unit:", exact=False)
        j.see("Parameters", exact=True)
    j.see("below the quality bar", exact=False)  # e2e-dp-gan was never evaluated
    j.shot("model_store_dp_model")
    j.choose("Model", "pneumoniamnist-stylegan2")
    j.page.locator('[data-testid="stMarkdownContainer"]').get_by_text("DP: off", exact=True).first.wait_for(
        state="visible")
    j.page.locator('[data-testid="stTable"]').get_by_text("fid", exact=True).first.wait_for(
        state="visible")  # the demo's evaluation, among its metrics
    j.logout()


def step_admin_approves_a_generator_for_clinicians(j: Journey) -> None:
    j.login("admin", ADMIN_PW)
    j.nav("Model store")
    j.choose("Model", "e2e-dp-gan")
    j.see("Hidden from clinicians until", exact=False)
    j.fill("Why clinicians may use it anyway (recorded in the audit log)", "teaching session")
    j.click("Approve for clinicians")
    j.see("Approved for clinicians by admin", exact=False).scroll_into_view_if_needed()
    j.shot("model_store_approval")
    j.logout()
    j.login("cleo", USERS["cleo"][1])
    j.nav("Synthetic scans")
    j.choose("Generator", "e2e-dp-gan", exact=False)  # offered now, labelled as approved, with its ε
    j.see("Approved for clinicians by admin", exact=False)
    j.reload_keeps_session("cleo")
    j.logout()


def step_admin_verifies_audit_log_with_every_data_action_under_its_user(j: Journey) -> None:
    from medsyn_core.storage import Store

    j.login("admin", ADMIN_PW)
    j.nav("Audit")
    j.click("Verify the chain")
    j.see("Audit chain intact")
    j.shot("audit")
    with Store(j.home / "medsyn.sqlite3") as store:
        events = [(e["actor"], e["action"], json.loads(e["details_json"])) for e in store.audit_events()]
    did = {(actor, action, details.get("kind") or details.get("where")) for actor, action, details in events}
    for expected in [("rita", "upload", "tabular"), ("rita", "upload", "tabular-training"),
                     ("rita", "evaluate", "tabular"), ("rita", "export", None), ("rita", "sample", None),
                     ("cleo", "export", "synthetic_images"), ("admin", "model_approved", None)]:
        assert expected in did, (expected, sorted(did))
    saved = [actor for actor, action, _ in events if action == "tabular-model-saved"]
    assert saved and set(saved) == {"rita"}  # the user who trained, never "medsyn" or "cli"


#: The journeys, in order: admin, researcher, clinician, then the admin's checks.
STEPS = [
    step_first_run_creates_admin,
    step_admin_creates_accounts_and_a_refused_form_keeps_what_was_typed,
    step_researcher_trains_dp_with_the_defaults_on_the_heart_table,
    step_researcher_fixes_a_messy_csv_and_xlsx_and_trains,
    step_jobs_table_then_a_researcher_disabled_meanwhile_is_logged_out,
    step_clinician_cannot_reach_training,
    step_clinician_opens_imaging_viewer,
    step_clinician_scrolls_three_planes_of_a_series,
    step_clinician_exports_exactly_the_previewed_images_as_dicom,
    step_model_store_shows_the_privacy_of_every_kind_of_model,
    step_admin_approves_a_generator_for_clinicians,
    step_admin_verifies_audit_log_with_every_data_action_under_its_user,
]


def test_end_to_end_in_chromium(server, page, tmp_path):
    url, log = server
    journey = Journey(page, url, home=tmp_path / "home")
    for step in STEPS:
        try:
            step(journey)
        except Exception:
            journey.shot(f"failed_{step.__name__}")
            raise
    assert all(p.stat().st_size > 10_000 for p in journey.shots)
    server_log = log.read_text()
    for secret in [ADMIN_PW, *(pw for _, pw in USERS.values()), "$argon2"]:
        assert secret not in server_log and secret not in page.content()


def test_single_sign_on_in_chromium(tmp_path, page, monkeypatch):
    """Optional OIDC login (``st.login``) against a local test identity provider (oidc-provider-mock,
    a real OIDC server): an unlinked identity is refused, a linked one gets its account's role, and
    logging out also ends the provider login."""
    from medsyn_core import auth
    from medsyn_core.storage import Store

    monkeypatch.setenv("MEDSYN_HOME", str(tmp_path / "home"))
    with Store() as store:
        admin = auth.create_first_admin(store, "admin", ADMIN_PW, via="test")
        auth.create_user(store, admin, "rita", USERS["rita"][1], "researcher")
        auth.set_sso_identity(store, admin, "rita", "rita@hospital.example")
    idp_port, app_port = _free_port(), _free_port()
    idp_log = tmp_path / "idp.log"
    with open(idp_log, "wb") as out:
        idp = subprocess.Popen([sys.executable, "-m", "oidc_provider_mock", "--port", str(idp_port)],
                               stdout=out, stderr=subprocess.STDOUT)
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(
        "[auth]\n"
        f'redirect_uri = "http://127.0.0.1:{app_port}/oauth2callback"\n'
        'cookie_secret = "a-test-cookie-secret-that-is-long-enough"\n'
        'client_id = "medsyn"\nclient_secret = "medsyn-test-secret"\n'
        f'server_metadata_url = "http://127.0.0.1:{idp_port}/.well-known/openid-configuration"\n')
    try:
        _wait_healthy(f"http://127.0.0.1:{idp_port}/.well-known/openid-configuration", idp, idp_log,
                      "the test identity provider")
        idle_s = 12  # a short idle timeout, to see that it also ends the provider login
        with streamlit_server(tmp_path, app_port, ("--secrets.files", str(secrets)),
                              {"MEDSYN_SESSION_TIMEOUT_MIN": str(idle_s / 60)}) as (url, log):
            j = Journey(page, url)
            # the test provider's pages link a stylesheet on a public CDN: never try to reach it
            page.context.route("https://**/*", lambda route: route.abort())

            def sso_login(identity: str) -> None:
                j.page.goto(url)
                j.heading("MedSyn — log in")
                j.click("Log in with single sign-on")
                j.page.wait_for_url(f"http://127.0.0.1:{idp_port}/oauth2/authorize**")
                j.page.fill("input[name=sub]", identity)
                j.page.get_by_role("button", name="Authorize").click()
                j.page.wait_for_url(f"{url}/**")

            def provider_logout() -> None:  # st.logout() goes through the provider's end_session page
                j.page.wait_for_url(f"http://127.0.0.1:{idp_port}/oauth2/end_session**")
                j.page.get_by_role("button", name="End session").click()
                j.page.wait_for_url(f"{url}/")
                j.heading("MedSyn — log in")

            sso_login("eve@hospital.example")  # the provider vouches for eve, but no account is linked
            j.see("no active MedSyn account is linked to your identity")
            j.click("Sign out of single sign-on")
            provider_logout()

            sso_login("rita@hospital.example")
            sidebar = j.page.locator('[data-testid="stSidebar"]')
            sidebar.get_by_text("Log out", exact=True).wait_for(state="visible")
            assert sidebar.get_by_text("rita · researcher").count() == 1
            assert "Users" not in j.nav_titles()  # the linked account's role applies
            j.shot("sso_logged_in")
            j.click("Log out")
            provider_logout()
            j.page.reload()  # the provider login ended too: a reload does not log rita back in
            j.heading("MedSyn — log in")
            j.page.wait_for_timeout(1000)
            assert j.page.locator('[data-testid="stSidebar"]').get_by_text("Log out").count() == 0

            sso_login("rita@hospital.example")  # idle past the timeout, then touch the page
            j.page.locator('[data-testid="stSidebar"]').get_by_text("Log out", exact=True).wait_for()
            j.page.wait_for_timeout((idle_s + 2) * 1000)
            j.page.locator('[data-testid="stSidebarNav"] a').first.click()  # any rerun
            provider_logout()
            server_log = log.read_text()
    finally:
        idp.terminate()
        idp.wait(15)
    with Store() as store:
        events = [(e["actor"], e["action"], json.loads(e["details_json"])) for e in store.audit_events()]
    failed = [details for actor, action, details in events if action == "login_failed"]
    assert failed == [{"via": "sso"}]  # eve only: the idle timeout ended rita's login without noise
    assert ("rita", "login", {"role": "researcher", "via": "sso"}) in events
    rita = [action for actor, action, _ in events if actor == "rita"]
    assert rita == ["login", "logout", "login", "session_expired"]  # not logged straight back in
    assert "medsyn-test-secret" not in server_log and "a-test-cookie-secret" not in server_log
