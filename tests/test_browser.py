"""The explorer in a real browser: JupyterLab + headless Chromium, a slider moved, the picture checked.

Runs with `make test-browser` (or plain `make test`) when chromium, chromedriver and selenium are installed;
otherwise it is skipped with the reason. Screenshots land in figures/explorer_before.png and
figures/explorer_after.png so a person can check what a user sees.
"""
from __future__ import annotations

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
FIGURES = REPO_ROOT / "figures"
NOTEBOOK_SOURCE = '''\
from selfmae.explore import explorer_widget
ui = explorer_widget("sample:pneumoniamnist", runs_dir={runs!r}, mask_ratio=0.75)
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


def _write_notebook(root: Path) -> Path:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Mask-ratio explorer (browser test)"),
                nbformat.v4.new_code_cell(NOTEBOOK_SOURCE.format(runs=str(root / "runs")))]
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
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.CSS_SELECTOR, ".selfmae-explorer .selfmae-status")
    return found[0].text if found else ""


def test_explorer_slider_in_jupyterlab(tmp_path):
    reason = _missing()
    if reason:
        pytest.skip(reason)
    from selenium.common.exceptions import ElementClickInterceptedException, StaleElementReferenceException
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    root = tmp_path / "lab"
    root.mkdir()
    (root / "runs").mkdir()
    _write_notebook(root)
    port, token = _free_port(), secrets.token_hex(16)
    base = f"http://127.0.0.1:{port}"
    proc = _start_lab(root, port, token)
    driver = None
    FIGURES.mkdir(exist_ok=True)
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
        WebDriverWait(driver, 60).until(lambda d: re.search(r"\d+ of \d+ patches hidden", _status(d)))
        before = _status(driver)
        images_before = [img.get_attribute("src") for img in
                         driver.find_elements(By.CSS_SELECTOR, ".selfmae-explorer img")]
        assert len(images_before) == 5, images_before
        n_patches = int(re.search(r"of (\d+) patches", before).group(1))
        assert f"{round(0.75 * n_patches)} of {n_patches} patches hidden (75 %)" in before, before
        explorer = driver.find_element(By.CSS_SELECTOR, ".selfmae-explorer")
        driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", explorer)
        time.sleep(0.5)
        driver.save_screenshot(str(FIGURES / "explorer_before.png"))

        handle = driver.find_element(By.CSS_SELECTOR, ".selfmae-explorer .widget-slider .noUi-handle")
        ActionChains(driver).click(handle).perform()
        for _ in range(10):   # 10 steps of 5 % to the left: 75 % -> 25 %
            handle.send_keys(Keys.ARROW_LEFT)
            time.sleep(0.05)
        WebDriverWait(driver, 30).until(lambda d: "(25 %)" in _status(d))
        after = _status(driver)
        assert f"{round(0.25 * n_patches)} of {n_patches} patches hidden (25 %)" in after, after
        WebDriverWait(driver, 10).until(lambda d: [i.get_attribute("src") for i in
                                                   d.find_elements(By.CSS_SELECTOR, ".selfmae-explorer img")]
                                        != images_before)
        mse_before = float(re.search(r"MSE ([0-9.]+)", before).group(1))
        mse_after = float(re.search(r"MSE ([0-9.]+)", after).group(1))
        assert mse_before != mse_after
        assert not driver.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output[data-mime-type*='error']")
        time.sleep(0.5)
        driver.save_screenshot(str(FIGURES / "explorer_after.png"))
    finally:
        if driver is not None:
            driver.quit()
        _stop(proc)
