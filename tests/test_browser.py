"""The explorer in a real browser: JupyterLab + headless Chromium, a slider moved, the picture checked.

Runs with `make test-browser` (or plain `make test`) when chromium, chromedriver and selenium are installed;
otherwise it is skipped with the reason. Screenshots (explorer_before.png, explorer_after.png: 2D;
explorer_3d.png: a volume) let a person check what a user sees: they land in the test's temporary folder, or in
$SELFMAE_SCREENSHOTS when set (`SELFMAE_SCREENSHOTS=figures make test-browser` refreshes the committed ones), so
a test run never rewrites the checkout.
"""
from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from selfmae.repro import REPO_ROOT

pytestmark = pytest.mark.browser

CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"), "/usr/bin/chromium")
                 if p and Path(p).exists()), None)
NOTEBOOK_SOURCE = '''\
from selfmae.explore import explorer_widget
ui = explorer_widget({source!r}, runs_dir={runs!r}, mask_ratio={mask_ratio!r})
ui
'''


def _missing() -> str | None:
    if CHROMIUM is None:
        return "chromium is not installed (apt-get install chromium chromium-driver)"
    if not CHROMEDRIVER.exists():
        return f"{CHROMEDRIVER} is missing (apt-get install chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[browser]')"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_notebook(root: Path, source: str, mask_ratio: float) -> Path:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Mask-ratio explorer (browser test)"),
                nbformat.v4.new_code_cell(NOTEBOOK_SOURCE.format(source=source, runs=str(root / "runs"),
                                                                          mask_ratio=mask_ratio))]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = root / "explorer.ipynb"
    nbformat.write(nb, str(path))
    return path


# JupyterLab user settings for the test server: start the notebook's kernel without asking, no news toast
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"autoStartDefaultKernel": True},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false"},
}


def _start_lab(root: Path, port: int, token: str) -> subprocess.Popen:
    import json

    settings = root / ".settings"
    for name, values in LAB_SETTINGS.items():
        path = settings / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(root / ".runtime"), JUPYTER_CONFIG_DIR=str(root / ".config"),
               JUPYTERLAB_WORKSPACES_DIR=str(root / ".workspaces"), PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={root}", f"--LabApp.workspaces_dir={root / '.workspaces'}",
           f"--LabApp.user_settings_dir={settings}",
           "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:   # containers and CI often run as root
        cmd.append("--allow-root")
    log = open(root / "lab.log", "wb")
    return subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_for_server(proc: subprocess.Popen, url: str, log: Path, timeout: float = 45) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited ({proc.returncode}):\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"JupyterLab did not answer at {url} within {timeout} s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    """Stop the server and its kernels: they run in the process group this test created for them."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def _driver(profile_dir: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--window-size=1500,1100", f"--user-data-dir={profile_dir}"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)


def _run_all_cells(driver, wait) -> None:
    """JupyterLab's menu: Run > Run All Cells (after accepting a kernel dialog, should one be open)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC

    for button in driver.find_elements(By.CSS_SELECTOR, ".jp-Dialog .jp-Dialog-button.jp-mod-accept"):
        button.click()

    run_menu = wait.until(EC.element_to_be_clickable(
        (By.XPATH, "//li[contains(@class,'lm-MenuBar-item')][.//div[normalize-space()='Run']]")))
    run_menu.click()
    item = wait.until(EC.element_to_be_clickable(
        (By.XPATH, "//li[contains(@class,'lm-Menu-item')][.//div[normalize-space()='Run All Cells']]")))
    item.click()


def _status(driver) -> str:
    """The explorer's status line; "" while it is being redrawn (the widget replaces the element on each update, so
    one found a moment ago can be gone: the waits that call this simply poll again)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        found = driver.find_elements(By.CSS_SELECTOR, ".selfmae-explorer .selfmae-status")
        return found[0].text if found else ""
    except StaleElementReferenceException:
        return ""


@contextlib.contextmanager
def _explorer_in_jupyterlab(tmp_path: Path, source: str, mask_ratio: float):
    """JupyterLab serving a one-cell notebook that shows the explorer on `source`, opened in headless Chromium
    and run: yields the driver once the explorer's status line says how many patches it hid."""
    reason = _missing()
    if reason:
        pytest.skip(reason)
    from selenium.common.exceptions import ElementClickInterceptedException, StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    root = tmp_path / "lab"
    root.mkdir()
    (root / "runs").mkdir()
    _write_notebook(root, source, mask_ratio)
    port, token = _free_port(), secrets.token_hex(16)
    base = f"http://127.0.0.1:{port}"
    proc = _start_lab(root, port, token)
    driver = None
    try:
        _wait_for_server(proc, f"{base}/api/status?token={token}", root / "lab.log")
        driver = _driver(tmp_path / "chromium-profile")
        driver.set_page_load_timeout(40)
        wait = WebDriverWait(driver, 40)
        driver.get(f"{base}/lab/tree/explorer.ipynb?token={token}")
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, ".jp-NotebookPanel .jp-Cell")))
        # the kernel (python3 from this venv) must be up before running: wait for "Idle" in the status bar
        # (JupyterLab 4.6 shows the kernel's item only while the notebook has focus: click into it first, then read
        # the whole status bar, which it fills late on a loaded machine)
        def focused_and_idle(d) -> bool:
            try:
                d.find_element(By.CSS_SELECTOR, ".jp-NotebookPanel .jp-Cell").click()
                return "Idle" in "".join(e.text for e in d.find_elements(By.CSS_SELECTOR, "#jp-main-statusbar"))
            except (StaleElementReferenceException,      # the notebook re-rendered under us: try again
                    ElementClickInterceptedException):     # its loading spinner still covers the cells
                return False

        WebDriverWait(driver, 120, poll_frequency=1).until(focused_and_idle)
        _run_all_cells(driver, wait)
        WebDriverWait(driver, 90).until(lambda d: re.search(r"\d+ of \d+ patches hidden", _status(d)))
        explorer = driver.find_element(By.CSS_SELECTOR, ".selfmae-explorer")
        driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", explorer)
        time.sleep(0.5)
        yield driver
        assert not driver.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output[data-mime-type*='error']")
    finally:
        if driver is not None:
            driver.quit()
        _stop(proc)


def _images(driver) -> list[str]:
    """The five panels' image sources, re-read if a panel is replaced while they are being read."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    for _ in range(10):
        try:
            return [img.get_attribute("src")
                    for img in driver.find_elements(By.CSS_SELECTOR, ".selfmae-explorer img")]
        except StaleElementReferenceException:
            time.sleep(0.2)
    raise AssertionError("the explorer's panels kept being replaced for 2 s")


def _press(driver, slider_index: int, key: str, times: int) -> None:
    """Focus the explorer's `slider_index`-th slider (0 mask ratio, 1 slice) and press `key` `times` times."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    handle = driver.find_elements(By.CSS_SELECTOR, ".selfmae-explorer .widget-slider .noUi-handle")[slider_index]
    ActionChains(driver).click(handle).perform()
    for _ in range(times):
        handle.send_keys(key)
        time.sleep(0.05)


def _screenshot(driver, tmp_path: Path, name: str) -> None:
    """Save what the browser shows as <name> in $SELFMAE_SCREENSHOTS (relative to the repository) or tmp_path."""
    folder = REPO_ROOT / os.environ["SELFMAE_SCREENSHOTS"] if os.environ.get("SELFMAE_SCREENSHOTS") else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(folder / name))


def test_explorer_slider_in_jupyterlab(tmp_path):
    """2D: the mask-ratio slider moved from 75 % to 25 % redraws the panels with the new count and error."""
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    with _explorer_in_jupyterlab(tmp_path, "sample:pneumoniamnist", 0.75) as driver:
        before = _status(driver)
        images_before = _images(driver)
        assert len(images_before) == 5, images_before
        n_patches = int(re.search(r"of (\d+) patches", before).group(1))
        assert f"{round(0.75 * n_patches)} of {n_patches} patches hidden (75 %)" in before, before
        _screenshot(driver, tmp_path, "explorer_before.png")

        _press(driver, 0, Keys.ARROW_LEFT, 10)   # 10 steps of 5 % to the left: 75 % -> 25 %
        WebDriverWait(driver, 30).until(lambda d: "(25 %)" in _status(d))
        after = _status(driver)
        assert f"{round(0.25 * n_patches)} of {n_patches} patches hidden (25 %)" in after, after
        WebDriverWait(driver, 10).until(lambda d: _images(d) != images_before)
        mse_before = float(re.search(r"MSE ([0-9.]+)", before).group(1))
        mse_after = float(re.search(r"MSE ([0-9.]+)", after).group(1))
        assert mse_before != mse_after
        time.sleep(0.5)
        _screenshot(driver, tmp_path, "explorer_after.png")


def test_explorer_slice_slider_on_a_3d_volume(tmp_path):
    """3D (the shipped AdrenalMNIST3D volume): the explorer opens on the middle slice; moving the slice slider
    shows another slice of the same masked volume (same hidden-patch count, other pictures, no model re-run
    needed), and the mask-ratio slider still works on the volume."""
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    with _explorer_in_jupyterlab(tmp_path, "sample:adrenalmnist3d", 0.5) as driver:
        before = _status(driver)
        middle = re.search(r"slice (\d+) on axis (\d)", before)
        assert middle, f"a volume's status names its slice: {before}"
        images_before = _images(driver)
        assert len(images_before) == 5, images_before
        n_patches = int(re.search(r"of (\d+) patches", before).group(1))
        assert f"{round(0.5 * n_patches)} of {n_patches} patches hidden (50 %)" in before, before

        _press(driver, 1, Keys.ARROW_LEFT, 4)
        target = f"slice {int(middle.group(1)) - 4} on axis {middle.group(2)}"
        WebDriverWait(driver, 30).until(lambda d: target in _status(d))
        assert f"{round(0.5 * n_patches)} of {n_patches} patches hidden (50 %)" in _status(driver)
        WebDriverWait(driver, 10).until(lambda d: _images(d) != images_before)
        time.sleep(0.5)
        _screenshot(driver, tmp_path, "explorer_3d.png")

        images_slice = _images(driver)
        _press(driver, 0, Keys.ARROW_RIGHT, 5)   # 50 % -> 75 %
        WebDriverWait(driver, 30).until(lambda d: "(75 %)" in _status(d))
        assert target in _status(driver), "the slice stays where the student put it"
        WebDriverWait(driver, 10).until(lambda d: _images(d) != images_slice)
