"""`platform dashboard` in a real headless Chromium: the pages of a finished tiny study (trained by
`platform study`, with pruning) load and show its trials. Screenshots are saved for a person to look at.

Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them) and the `selenium` package
(the test extra); without them the test is skipped, saying which is missing.
"""

import contextlib
import io
import os
import shutil
import struct
import threading
from pathlib import Path

import optuna
import pytest

from core.cli.main import main
from studies.dashboard import make_dashboard, storage_url

EXAMPLE = Path(__file__).parents[2] / "studies" / "interleaved_ratios.toml"
SCREENSHOTS_ENV = "PLATFORM_TEST_SCREENSHOTS"
DEFAULT_SCREENSHOTS = Path(__file__).parents[2] / "runs" / "test-screenshots"
TRIALS = 3

pytestmark = pytest.mark.integration  # a headless browser


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory, tiny_data_dir):
    """A tiny study of 3 trials, two epochs each, median pruner, run through the real command."""
    folder = tmp_path_factory.mktemp("browser-studies")
    args = ["study", "browser", "--study-dir", folder, "--trials", TRIALS, "--pruner", "median",
            "--space-file", EXAMPLE, "--tasks", "sst,sts", "--checkpoint", "tiny", "--limit", "16",
            "--max-length", "24", "--threads", "1", "--batch-size", "8", "--epochs", "2",
            "--sampler", "interleaved", "--data-dir", tiny_data_dir]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main([str(a) for a in args]) == 0
    return folder


@pytest.fixture
def dashboard(finished_study):
    """The dashboard's base URL, served from a thread on a free loopback port."""
    server = make_dashboard(storage_url("browser", str(finished_study), None), port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        missing = [name for name, path in (("chromium", chromium), ("chromedriver", driver)) if not path]
        pytest.skip(f"no {' and no '.join(missing)} on PATH (Debian: apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1400,900"):
        options.add_argument(flag)
    # an explicit driver path: selenium never tries to download one
    session = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))
    yield session
    session.quit()


@pytest.fixture
def screenshots():
    folder = Path(os.environ.get(SCREENSHOTS_ENV) or DEFAULT_SCREENSHOTS)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def page_text_when(browser, url: str, wanted: list[str], timeout: float = 60.0) -> str:
    """Open ``url`` and wait until the rendered page's text holds every string of ``wanted``."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url)
    text = lambda: browser.find_element(By.TAG_NAME, "body").text  # noqa: E731
    try:
        WebDriverWait(browser, timeout).until(lambda _: all(w in text() for w in wanted))
    except TimeoutException:
        raise AssertionError(f"{url} did not show {wanted} within {timeout:.0f} s; it shows:\n{text()[:2000]}")
    return text()


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", header[16:24])


def test_dashboard_pages_show_the_finished_study_and_its_trials(finished_study, dashboard, browser, screenshots):
    study = optuna.load_study(study_name="browser", storage=storage_url("browser", str(finished_study), None))
    assert len(study.trials) == TRIALS

    # the study list: the study by name, from the storage the command serves
    page_text_when(browser, f"{dashboard}/dashboard/", ["browser"])
    browser.save_screenshot(str(screenshots / "dashboard-studies.png"))

    # the study's trial list: every trial and its state, the best one marked; the first trial's
    # details: its per-epoch reports (what the pruner saw), a searched parameter, its run folder
    trials_url = f"{dashboard}/dashboard/studies/{study._study_id}/trials"
    wanted = [f"Trial {t.number}" for t in study.trials] + ["Complete", "Best Trial", "Intermediate Values",
                                                            "ratio_sst", "run_dir", str(study.trials[0].user_attrs["run_dir"])]
    text = page_text_when(browser, trials_url, wanted)
    assert text.count("Complete") >= TRIALS
    shot = screenshots / "dashboard-trials.png"
    browser.save_screenshot(str(shot))
    width, height = png_size(shot)
    assert (width, height) >= (800, 600), f"{shot}: {width}x{height}"
    print(f"\nscreenshots in {screenshots}")
