"""Fixtures for real-browser tests: a real Streamlit server driven by headless Chromium.

Every test collected from this folder is marked ``browser``. A missing Chromium is a
hard failure, never a skip, so CI cannot go green without running these tests.

``start_streamlit`` and ``wait_for_app`` are plain functions, so benchmarks can import
them too: with the repo root on ``sys.path``,
``from tests.browser.conftest import start_streamlit, wait_for_app``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, sync_playwright

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
ARTIFACTS_DIR = REPO_ROOT / "test-artifacts"

# Debian's Chromium in a container: no sandbox (root), no GPU, no network chatter.
# --disable-dev-shm-usage: Docker's default 64 MB /dev/shm crashes Chromium tabs.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
VIEWPORT = {"width": 1400, "height": 1000}
DEFAULT_TIMEOUT_MS = 30_000
SERVER_START_TIMEOUT_S = 60.0
SERVER_STOP_GRACE_S = 10.0

# Installed into every page (before Streamlit's JS runs) so wait_for_app can tell
# "idle" from "a rerun is about to start": it records when the user last interacted
# and when the script-run state last changed. performance.now() restarts per document.
IDLE_TRACKER_JS = """
(() => {
  if (window.__pwIdle) return;
  const t = { lastInput: 0, lastStateChange: 0 };
  window.__pwIdle = t;
  const onInput = () => { t.lastInput = performance.now(); };
  for (const ev of ["keydown", "keyup", "pointerdown", "pointerup", "click", "input",
                    "change", "wheel"]) {
    document.addEventListener(ev, onInput, { capture: true, passive: true });
  }
  new MutationObserver(() => { t.lastStateChange = performance.now(); }).observe(document, {
    subtree: true, attributes: true, attributeFilter: ["data-test-script-state"],
  });
})();
"""

# True once Streamlit is connected, not running, and has been quiet long enough that a
# debounced widget change (sliders debounce ~200 ms) would already have started a rerun.
IDLE_PREDICATE_JS = """
([inputQuietMs, stateQuietMs]) => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app) return false;
  const conn = app.getAttribute("data-test-connection-state");
  if (conn === "DISCONNECTED_FOREVER") return "disconnected";
  if (conn !== "CONNECTED") return false;
  const state = app.getAttribute("data-test-script-state");
  if (state !== "notRunning" && state !== "compilationError") return false;
  const t = window.__pwIdle;
  if (!t) return true;
  const now = performance.now();
  return now - t.lastInput >= inputQuietMs && now - t.lastStateChange >= stateQuietMs;
}
"""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under tests/browser as ``browser``."""
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """Expose each phase's report on the item so ``page`` can screenshot failures."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


# --------------------------------------------------------------------------- helpers


def artifacts_path() -> Path:
    """``test-artifacts/`` at the repo root, created on demand."""
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS_DIR


def card_value(page: Page, label: str) -> Locator:
    """The value of the first metric card whose label is exactly `label`."""
    label_re = re.compile(rf"^\s*{re.escape(label)}\s*$")
    metric = page.get_by_test_id("stMetric").filter(
        has=page.get_by_test_id("stMetricLabel").filter(has_text=label_re)
    )
    return metric.first.get_by_test_id("stMetricValue")


def card(page: Page, label: str) -> str:
    """The text of `card_value`."""
    return card_value(page, label).inner_text().strip()


def layer_slider(page: Page, layer: str) -> Locator:
    """The Prune page's slider of `layer`."""
    return page.get_by_role("slider", name=re.compile(rf"^{re.escape(layer)} ·"))


def screenshot(page: Page, name: str) -> Path:
    """Save a full-page PNG as ``test-artifacts/<name>.png`` and return its path."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    path = artifacts_path() / f"{safe}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def free_port() -> int:
    """An unused localhost TCP port (tiny race window; fine for tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"<could not read {path}: {exc}>"


@dataclass
class StreamlitServer:
    """A running ``streamlit run`` subprocess."""

    url: str
    port: int
    script: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    _log_file: IO[bytes] | None = field(repr=False, default=None)

    def log_tail(self, lines: int = 60) -> str:
        return _tail(self.log_path, lines)

    def stop(self) -> None:
        """Terminate, then kill if it ignores SIGTERM for the grace period."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=SERVER_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=SERVER_STOP_GRACE_S)
        if self._log_file is not None:
            with contextlib.suppress(Exception):
                self._log_file.close()

    def __enter__(self) -> StreamlitServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_streamlit(
    script_path: str | os.PathLike[str],
    *,
    port: int | None = None,
    extra_args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike[str] = REPO_ROOT,
    timeout_s: float = SERVER_START_TIMEOUT_S,
) -> StreamlitServer:
    """Start ``streamlit run script_path`` and wait until /_stcore/health says ``ok``.

    Runs from the repo root by default so ``.streamlit/config.toml`` applies. Raises
    RuntimeError (with the server log tail) if it exits or is not healthy in time.
    The caller owns the server: call ``.stop()`` or use it as a context manager.
    """
    script = Path(script_path)
    if not script.is_absolute():
        script = Path(cwd) / script
    port = port or free_port()
    log_path = artifacts_path() / f"streamlit-{script.stem}-{port}.log"
    cmd = [
        sys.executable, "-m", "streamlit", "run", str(script),
        "--server.port", str(port),
        "--server.address", "127.0.0.1",
        "--server.headless", "true",
        "--browser.gatherUsageStats", "false",
        "--server.fileWatcherType", "none",
        *extra_args,
    ]  # fmt: skip
    # As `make run` starts it: the operator's WORKBENCH_* settings only where a test gives them.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
    full_env = {**inherited, "PYTHONUNBUFFERED": "1", **(env or {})}
    log_file = open(log_path, "wb")  # noqa: SIM115 - closed by StreamlitServer.stop()
    process = subprocess.Popen(
        cmd, cwd=cwd, env=full_env, stdin=subprocess.DEVNULL, stdout=log_file,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    server = StreamlitServer(
        url=f"http://127.0.0.1:{port}", port=port, script=script, log_path=log_path,
        process=process, _log_file=log_file,
    )  # fmt: skip

    health = f"{server.url}/_stcore/health"
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            server.stop()
            raise RuntimeError(
                f"streamlit exited with code {process.returncode} before becoming healthy "
                f"({' '.join(cmd)}).\n--- {log_path} (tail) ---\n{server.log_tail()}"
            )
        try:
            with urllib.request.urlopen(health, timeout=2) as resp:
                if resp.status == 200 and resp.read().strip() == b"ok":
                    return server
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass  # not listening yet
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(
                f"streamlit not healthy at {health} after {timeout_s:.0f}s.\n"
                f"--- {log_path} (tail) ---\n{server.log_tail()}"
            )
        time.sleep(0.25)


def install_idle_tracker(target: BrowserContext | Page) -> None:
    """Make ``wait_for_app`` interaction-aware on pages opened from ``target``."""
    target.add_init_script(IDLE_TRACKER_JS)


def wait_for_app(
    page: Page,
    *,
    timeout_ms: float = 60_000,
    input_quiet_ms: float = 500,
    state_quiet_ms: float = 250,
    check_exceptions: bool = True,
) -> None:
    """Block until Streamlit is connected and idle (no script run pending or running).

    Call after ``goto`` and after every interaction. Idle means ``stApp`` reports
    ``CONNECTED`` + ``notRunning`` and, when the idle tracker is installed (the ``page``
    fixture does this), no input for ``input_quiet_ms`` and no run-state change for
    ``state_quiet_ms``: that covers widget debounce and chained ``st.rerun()``s.
    Without the tracker it falls back to a short fixed delay before checking.
    With ``check_exceptions`` an ``st.exception``/uncaught error on the page fails.
    """
    page.wait_for_selector('[data-testid="stApp"]', state="attached", timeout=timeout_ms)
    if not page.evaluate("() => Boolean(window.__pwIdle)"):
        page.wait_for_timeout(input_quiet_ms)  # give a pending rerun time to start
    handle = page.wait_for_function(
        IDLE_PREDICATE_JS, arg=[input_quiet_ms, state_quiet_ms], timeout=timeout_ms,
        polling=50,
    )  # fmt: skip
    if handle.json_value() == "disconnected":
        raise AssertionError("Streamlit app disconnected (server stopped or crashed)")
    if check_exceptions:
        errors = page.locator('[data-testid="stException"]')
        if errors.count():
            texts = "\n---\n".join(errors.all_inner_texts())
            raise AssertionError(f"Streamlit app shows {errors.count()} exception(s):\n{texts}")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """``test-artifacts/`` at the repo root (created)."""
    return artifacts_path()


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """The Chromium binary; fails (never skips) when there is none."""
    path = (
        os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    )
    if not path or not os.access(path, os.X_OK):
        pytest.fail(
            "Chromium not found for browser tests. Run `bash scripts/ensure_chromium.sh` "
            "(Debian/Ubuntu: sudo apt-get install chromium fonts-liberation) or set "
            f"CHROMIUM=/path/to/chrome. (CHROMIUM={os.environ.get('CHROMIUM')!r})",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def streamlit_factory() -> Iterator[Callable[..., StreamlitServer]]:
    """``factory(script_path, **kw) -> StreamlitServer``; all stopped at session end."""
    servers: list[StreamlitServer] = []

    def factory(script_path: str | os.PathLike[str], **kwargs: object) -> StreamlitServer:
        try:
            server = start_streamlit(script_path, **kwargs)  # type: ignore[arg-type]
        except RuntimeError as exc:
            error = str(exc)
        else:
            servers.append(server)
            return server
        # Outside the except block so the report shows the log tail, not a chained trace.
        pytest.fail(error, pytrace=False)

    yield factory
    for server in reversed(servers):
        server.stop()


@pytest.fixture(scope="session")
def streamlit_server(streamlit_factory: Callable[..., StreamlitServer]) -> str:
    """Base URL (``http://127.0.0.1:<port>``) of ``streamlit run app.py``, session-wide."""
    return streamlit_factory(REPO_ROOT / "app.py").url


@pytest.fixture(scope="session")
def browser(chromium_path: str) -> Iterator[Browser]:
    """Headless system Chromium via Playwright (``playwright install`` is not needed)."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh 1400x1000 page (own context) with the idle tracker installed.

    On a failing test, a full-page screenshot is saved to test-artifacts/.
    """
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    install_idle_tracker(context)
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    page = context.new_page()
    try:
        yield page
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            with contextlib.suppress(Exception):
                screenshot(page, f"FAILED-{request.node.name}")
        context.close()
