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
    env = dict(os.environ, MEDSYN_HOME=str(tmp_path / "home"), MEDSYN_DEVICE="cpu", **(extra_env or {}))
    env.pop("MEDSYN_ADMIN_PASSWORD", None)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
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
        box.locator("input").first.click()
        self.page.get_by_role("option", name=option, exact=exact).first.click()

    def nav(self, title: str) -> None:
        """Open a page from the sidebar menu (the same browser session, so the login stays)."""
        self.page.locator('[data-testid="stSidebarNav"]').get_by_text(title, exact=True).click()
        self.heading(title)

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
        assert sidebar.get_by_text(username).count() >= 1

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
    j.page.goto(j.url)
    j.heading("MedSyn — first run")
    j.fill("Password (at least 10 characters)", ADMIN_PW)
    j.fill("Repeat the password", ADMIN_PW)
    j.click("Create admin")
    j.heading("MedSyn")
    j.see("Bundled datasets")
    j.logout()
    j.fill("Username", "admin")
    j.fill("Password", "not-the-password")
    j.click("Log in")
    j.see("Wrong username or password.")
    j.shot("login_refused")
    j.login("admin", ADMIN_PW)


def step_admin_creates_researcher_and_clinician(j: Journey) -> None:
    j.nav("Users")
    for username, (role, password) in USERS.items():
        j.fill("Username", username)
        j.choose("Role", role)
        j.fill("Initial password (at least 10 characters)", password)
        j.click("Create account")
        j.see(f"Created {username} ({role}).")
    j.shot("users")
    j.logout()


def step_researcher_sees_training_section(j: Journey) -> None:
    j.login("rita", USERS["rita"][1])
    titles = j.nav_titles()
    assert "Evaluation" in titles and "Jobs" in titles and "Audit" not in titles, titles
    j.nav("Tabular")
    j.see("Schema and identifiers", exact=True)
    assert j.page.get_by_text("Not allowed").count() == 0
    j.nav("Jobs")  # the server's worker runs the example job in a child process; the page polls
    j.settle()
    j.page.get_by_text("Run the example job", exact=False).first.click()
    j.click("Start example job")
    j.see("#1 example-primes · finished")
    j.see("17984")  # π(200 000), in the job's result
    j.shot("jobs")
    j.logout()


def step_live_jobs_panel_ends_the_session_of_a_researcher_disabled_meanwhile(j: Journey) -> None:
    """Issue 20: the Jobs panel refreshes itself every second; each refresh re-checks the session, so
    a researcher disabled by an admin is logged out without touching the page (before, the panel
    kept running with the user of the page's first run, and "Resume" still queued jobs)."""
    from medsyn_core import auth
    from medsyn_core.storage import Store

    j.login("rita", USERS["rita"][1])
    j.nav("Jobs")
    j.see("#1 example-primes · finished")
    with Store(j.home / "medsyn.sqlite3") as store:
        admin = auth.load_user(store, "admin")
        auth.set_active(store, admin, "rita", False)
    try:
        j.page.get_by_role("heading", name="MedSyn — log in", exact=True).wait_for(timeout=30_000)
        j.see("the account was disabled", exact=False)
    finally:
        with Store(j.home / "medsyn.sqlite3") as store:
            auth.set_active(store, admin, "rita", True)


def step_researcher_trains_tabular_model_samples_and_downloads_csv(j: Journey) -> None:
    import pandas as pd

    j.login("rita", USERS["rita"][1])
    j.nav("Tabular")
    j.see("Schema and identifiers", exact=True)
    j.fill("Epochs", "2")
    j.fill("Batch size", "100")
    j.fill("Model name", "e2e-heart-ctgan")
    j.click("Train")  # a background job in the server's worker process; the page polls it
    j.page.get_by_text("saved as", exact=False).first.wait_for(state="visible", timeout=180_000)
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
    assert set(rows["sex"].dropna().unique()) <= {0, 1}
    j.logout()


def step_clinician_cannot_reach_training(j: Journey) -> None:
    j.login("cleo", USERS["cleo"][1])
    titles = j.nav_titles()
    assert titles == ["Home", "Tabular", "Imaging", "Synthetic scans", "Model store"], titles
    j.nav("Tabular")
    j.see("Not allowed: the clinician role cannot train models")
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
    j.logout()


def step_clinician_scrolls_three_planes_of_a_series(j: Journey) -> None:
    """Issue 18: the slice viewer renders the axial, coronal and sagittal planes of the bundled MR series
    (pre-rendered, cached), with their geometry, and a slider scrolls one plane."""
    j.login("cleo", USERS["cleo"][1])
    j.nav("Imaging")
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
    j.logout()


def step_clinician_exports_dicom_zip_from_demo_model(j: Journey) -> None:
    import pydicom

    j.login("cleo", USERS["cleo"][1])
    j.nav("Synthetic scans")
    j.see("Rows: 1 = normal", exact=False)  # the demo model's preview grid
    j.page.get_by_role("button", name="Generate and export").first.wait_for(state="visible")
    j.click("Generate and export")  # defaults: all classes, 16 images, DICOM
    button = j.page.get_by_role("button", name="Download synthetic-", exact=False).first
    button.wait_for(state="visible")
    j.shot("clinician_dicom_export")
    with j.page.expect_download() as info:
        button.click()
    path = Path(info.value.path())
    with zipfile.ZipFile(path) as zf:
        names = [n for n in zf.namelist() if n.endswith(".dcm")]
        assert len(names) == 16, zf.namelist()
        datasets = [pydicom.dcmread(zf.open(n)) for n in names]
    assert all(ds.SeriesDescription.startswith("SYNTHETIC") for ds in datasets)
    assert {ds.SeriesInstanceUID for ds in datasets} == {datasets[0].SeriesInstanceUID}
    assert all(ds.pixel_array.shape == (28, 28) for ds in datasets)
    # the training tab of the same page is refused on the server side
    j.page.get_by_role("tab", name="Train a new generator").click()
    j.see("Not allowed: the clinician role cannot train models")
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
        tab.save(name="e2e-dp-tvae")
        from test_imaging_generator import TINY_SG2, toy_set

        gan = GANTrainer(toy_set(64), TrainConfig(kimg=0.04, batch_size=8, checkpoint_kimg=0, grid_kimg=0,
                                                  arch=dict(TINY_SG2), dp_epsilon=5.0))
        gan.train()
        save_generator(gan, j.home / "models" / "e2e-dp-gan", name="e2e-dp-gan")
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
    j.shot("model_store_dp_model")
    j.choose("Model", "pneumoniamnist-stylegan2")
    j.page.locator('[data-testid="stMarkdownContainer"]').get_by_text("DP: off", exact=True).first.wait_for(
        state="visible")
    j.page.locator('[data-testid="stTable"]').get_by_text("fid", exact=True).first.wait_for(
        state="visible")  # the demo's evaluation, among its metrics
    j.logout()


def step_admin_verifies_audit_log(j: Journey) -> None:
    j.login("admin", ADMIN_PW)
    j.nav("Audit")
    j.click("Verify the chain")
    j.see("Audit chain intact")
    j.shot("audit")


#: The journey, in order. Engine steps go here once their pages are merged.
STEPS = [
    step_first_run_creates_admin,
    step_admin_creates_researcher_and_clinician,
    step_researcher_sees_training_section,
    step_live_jobs_panel_ends_the_session_of_a_researcher_disabled_meanwhile,
    step_researcher_trains_tabular_model_samples_and_downloads_csv,
    step_clinician_cannot_reach_training,
    step_clinician_opens_imaging_viewer,
    step_clinician_scrolls_three_planes_of_a_series,
    step_clinician_exports_dicom_zip_from_demo_model,
    step_model_store_shows_the_privacy_of_every_kind_of_model,
    step_admin_verifies_audit_log,
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
