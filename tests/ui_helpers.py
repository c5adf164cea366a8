"""Helpers for the end-to-end test of `make ui`: the MLflow UI as a subprocess, headless Chromium, DOM parsing.

Kept apart from the test so that the test reads as the scenario it checks.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Headless Chromium as root in a closed network: no sandbox (root), no GPU, and none of the background
# connections (updates, sync, QUIC, first-run pings) that the network would refuse.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--no-proxy-server",
    "--hide-scrollbars",
    "--run-all-compositor-stages-before-draw",
)


def find_chromium() -> str | None:
    """Debian's `chromium` (or `chromium-browser` elsewhere) from PATH, None if there is none."""
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path, n: int = 40) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "<no log>"
    return "\n".join(lines[-n:])


def _group_alive(pgid: int) -> bool:
    """Whether any process other than a zombie is left in the process group."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses, so split after the last ')'.
        fields = text[text.rfind(")") + 2 :].split()
        if len(fields) >= 3 and int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _wait_group_gone(proc: subprocess.Popen, pgid: int, wait_s: float) -> bool:
    deadline = time.monotonic() + wait_s
    while True:
        if proc.poll() is not None and not _group_alive(pgid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)


def kill_group(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM the process group led by `proc` (started with start_new_session), then SIGKILL what is left."""
    pgid = proc.pid
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        if _wait_group_gone(proc, pgid, wait_s):
            break
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


@dataclass
class MlflowUI:
    """A running `mlflow ui`, started the way the Makefile's `ui` target starts it."""

    proc: subprocess.Popen
    port: int
    log_path: Path
    command: list[str]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self) -> str:
        return _tail(self.log_path)


def mlflow_ui_command(store_uri: str, artifact_root: Path, port: int, bin_dir: Path) -> list[str]:
    """The Makefile's `ui` recipe, with the test's store and port."""
    return [
        str(bin_dir / "mlflow"),
        "ui",
        "--backend-store-uri",
        store_uri,
        "--artifacts-destination",
        str(artifact_root),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]


def _http_ok(url: str, timeout: float = 600.0) -> bool:
    # No proxy: loopback must never go through one that the environment may name.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start_mlflow_ui(
    store_uri: str, artifact_root: Path, bin_dir: Path, log_path: Path, timeout_s: float = 1800.0
) -> MlflowUI:
    """Start `mlflow ui` on a free loopback port and wait until /health answers (the event; `timeout_s` is only a
    hang guard, and each probe waits as long as the server takes to answer).

    A port taken between choosing and binding makes the server exit at once; that is retried on another port.
    Any other early exit, or no answer within `timeout_s`, raises with the server's log.
    """
    deadline = time.monotonic() + timeout_s
    for _attempt in range(3):
        port = free_port()
        command = mlflow_ui_command(store_uri, artifact_root, port, bin_dir)
        log = log_path.open("wb")
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: uvicorn workers and job runners die with it
        )
        log.close()
        ui = MlflowUI(proc=proc, port=port, log_path=log_path, command=command)
        try:
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    break
                if _http_ok(f"{ui.base_url}/health"):
                    return ui
                time.sleep(0.5)
            else:
                raise TimeoutError(
                    f"mlflow ui gave no answer on {ui.base_url}/health in {timeout_s:.0f} s:\n{ui.log_tail()}"
                )
        except BaseException:
            kill_group(proc)
            raise
        kill_group(proc)
        log_text = ui.log_tail()
        if "address already in use" not in log_text.lower():
            raise RuntimeError(f"mlflow ui exited with code {proc.returncode} before answering:\n{log_text}")
    raise RuntimeError(f"mlflow ui found no free port in 3 tries:\n{log_text}")


@dataclass
class ChromiumResult:
    returncode: int
    stdout: str
    stderr: str


def run_chromium(binary: str, args: list[str], timeout_s: float) -> ChromiumResult:
    """Run headless Chromium once with a fresh profile; kill its whole process group when done or late."""
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        command = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            stdout, stderr = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            kill_group(proc, grace_s=0.0)
            stdout, stderr = proc.communicate()
            returncode = -9
        else:
            returncode = proc.returncode
            with contextlib.suppress(ProcessLookupError):  # helpers (GPU, crashpad) outliving the browser
                os.killpg(proc.pid, signal.SIGKILL)
    return ChromiumResult(
        returncode, stdout.decode("utf-8", "replace"), stderr.decode("utf-8", "replace")[-4000:]
    )


def render(
    binary: str, url: str, png: Path, budget_ms: int, timeout_s: float, size: tuple[int, int] = (1600, 1000)
) -> ChromiumResult:
    """Load `url`, let its scripts run for `budget_ms` of virtual time, then print the DOM and save a screenshot.

    One browser run does both, so the picture shows the very page whose DOM is checked. Virtual time stands
    still while requests are in flight, so a slow server costs wall time, not the single-page app's budget.
    """
    return run_chromium(
        binary,
        [
            f"--virtual-time-budget={budget_ms}",
            f"--window-size={size[0]},{size[1]}",
            f"--screenshot={png}",
            "--dump-dom",
            url,
        ],
        timeout_s,
    )


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; raises if the file is not a PNG."""
    head = path.read_bytes()[:24]
    if head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR":
        raise ValueError(f"{path} is not a PNG")
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


@dataclass
class RenderedPage:
    """What a rendered DOM shows: its text nodes, and the ag-grid table's cells by row id and column id.

    MLflow's runs table is an ag-grid: each row carries `row-id` (the run's id) and each cell `col-id`
    (e.g. "attributes.`Run Name`", "metrics.`model_accuracy_mean`"). A row is split over the pinned-left,
    centre and pinned-right containers; the cells of one row id are merged here.
    """

    texts: list[str] = field(default_factory=list)
    cells: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return " ".join(self.texts)

    def cell(self, row_id: str, col_id: str) -> str | None:
        return self.cells.get(row_id, {}).get(col_id)


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = RenderedPage()
        # One entry per open element: (tag, row id or None, col id or None).
        self._stack: list[tuple[str, str | None, str | None]] = []
        self._skip = 0  # inside <script>/<style>

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _VOID:
            return
        a = dict(attrs)
        self._stack.append((tag, a.get("row-id"), a.get("col-id")))
        if tag in ("script", "style"):
            self._skip += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        pass

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID:
            return
        # Pop to the matching open tag (tolerates unclosed elements).
        for i in range(len(self._stack) - 1, -1, -1):
            if self._stack[i][0] == tag:
                for closed, _, _ in self._stack[i:]:
                    if closed in ("script", "style"):
                        self._skip -= 1
                del self._stack[i:]
                return

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        text = " ".join(data.split())
        if not text:
            return
        self.page.texts.append(text)
        row_id = col_id = None
        for _, row, col in reversed(self._stack):
            if col_id is None and col is not None:
                col_id = col
            if row is not None:
                row_id = row
                break
        if row_id is not None and col_id is not None:
            cells = self.page.cells.setdefault(row_id, {})
            cells[col_id] = f"{cells[col_id]} {text}" if col_id in cells else text


def parse_page(html: str) -> RenderedPage:
    parser = _PageParser()
    parser.feed(html)
    parser.close()
    return parser.page
