"""`floydtui serve` judged by a real browser: headless Chromium renders the wizard from the page.

textual-serve's page draws the app with xterm.js on a canvas, so the text is not in the DOM.
Chromium is driven over the DevTools protocol (aiohttp's websocket client): a script that
runs before the page's own catches the page's terminal object as it is built, and the test
reads the lines that terminal shows once the app's output has arrived through the websocket.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from floydtui.config.flavours import FLAVOUR_NAMES

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1400,900", "--remote-debugging-port=0"]
# textual-serve's page keeps its terminal in a local object; assigning its `fitAddon` runs this
# setter with that object as `this`, which is then kept where the test can read it.
CATCH_TERMINAL = """
Object.defineProperty(Object.prototype, "fitAddon", {
  configurable: true,
  set(value) {
    Object.defineProperty(this, "fitAddon", {value, writable: true, configurable: true});
    window.__floydTerminal = this;
  },
});
"""
SCREEN_TEXT = """(() => {
  const t = window.__floydTerminal && window.__floydTerminal.terminal;
  if (!t) return null;
  const lines = [];
  for (let i = 0; i < t.rows; i++) lines.push(t.buffer.active.getLine(i).translateToString(true));
  return lines.join("\\n");
})()"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_group(proc: subprocess.Popen) -> None:
    """End a process started with start_new_session and everything it started."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)
        except ProcessLookupError:
            pass
    for stream in (proc.stdout, proc.stderr):
        if stream:
            stream.close()


def wait_for(what: str, check, timeout: float = 120.0, seen=lambda: ""):
    """Poll `check` until it returns something truthy; fail saying what was awaited and what was seen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"waited {timeout:.0f}s for {what}; saw: {seen()}")


class DevTools:
    """A minimal DevTools-protocol client on one page target."""

    def __init__(self, ws):
        self.ws, self.next_id = ws, 0

    async def call(self, method: str, **params):
        self.next_id += 1
        await self.ws.send_json({"id": self.next_id, "method": method, "params": params})
        while True:
            message = json.loads((await self.ws.receive(timeout=60)).data)
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]


async def render(url: str, devtools_port: int, expected: tuple[str, ...], screenshot: Path) -> str:
    """Open `url` in the browser and return the terminal's text once it shows all of `expected`."""
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{devtools_port}/json/list") as r:
            page = next(t for t in await r.json() if t["type"] == "page")
        async with session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            cdp = DevTools(ws)
            await cdp.call("Page.enable")
            await cdp.call("Page.addScriptToEvaluateOnNewDocument", source=CATCH_TERMINAL)
            await cdp.call("Page.navigate", url=url)
            text, deadline = None, time.monotonic() + 120
            while time.monotonic() < deadline:
                result = await cdp.call("Runtime.evaluate", expression=SCREEN_TEXT, returnByValue=True)
                text = result["result"].get("value")
                if text and all(name in text for name in expected):
                    shot = await cdp.call("Page.captureScreenshot", format="png")
                    screenshot.write_bytes(base64.b64decode(shot["data"]))
                    return text
                await asyncio.sleep(0.5)
            return text or "(the page built no terminal)"


needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install "
                                                              "chromium; .ci/run installs it)")


def browser_text(tmp_path: Path, serve_args: list[str], expected: tuple[str, ...]) -> str:
    """Start `floydtui serve SERVE_ARGS` and headless Chromium on it; the page's terminal text."""
    port = free_port()
    server = browser = None
    try:
        server = subprocess.Popen([sys.executable, "-m", "floydtui", "serve", "--port", str(port), *serve_args],
                                  cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  start_new_session=True)

        def listening():
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        wait_for(f"floydtui serve to listen on port {port}", lambda: listening() or server.poll() is not None,
                 seen=lambda: f"exit code {server.poll()}")
        assert server.poll() is None, server.stdout.read()
        profile = tmp_path / "chromium-profile"
        browser = subprocess.Popen([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        active = profile / "DevToolsActivePort"  # Chromium writes the port it chose here
        wait_for("Chromium's DevToolsActivePort file", lambda: active.is_file() and active.read_text().strip(),
                 seen=lambda: f"exit code {browser.poll()}")
        devtools_port = int(active.read_text().split()[0])
        screenshot = tmp_path / "page.png"
        text = asyncio.run(render(f"http://127.0.0.1:{port}/?fontsize=12", devtools_port, expected, screenshot))
        missing = [word for word in expected if word not in text]
        assert not missing, f"the browser's terminal lacks {missing}; it shows:\n{text}"
        assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        return text
    finally:
        for proc in (browser, server):
            if proc is not None:
                stop_group(proc)


@pytest.mark.slow
@needs_chromium
def test_serve_shows_the_wizard_in_headless_chromium(tmp_path):
    text = browser_text(tmp_path, [], FLAVOUR_NAMES)
    assert "Flavour" in text and "Hardware" in text  # the wizard's step bar


@pytest.mark.slow
@needs_chromium
def test_serve_watch_shows_the_monitor_of_a_run_in_headless_chromium(tmp_path):
    run = tmp_path / "demo-run"
    run.mkdir()
    shutil.copy(REPO / "tests" / "data" / "events-tiny-run.jsonl", run / "events.jsonl")
    text = browser_text(tmp_path, ["--watch", str(run)], ("floydtui monitor", "demo-run", "COMPLETED", "step 48/48"))
    assert "loss (raw · EMA)" in text


def start_serve(tmp_path: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "floydtui", "serve", *args], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def test_serve_on_localhost_prints_the_tunnel_and_the_page_follows_the_browsers_address(tmp_path):
    import urllib.request

    port = free_port()
    server = start_serve(tmp_path, "--port", str(port))
    try:
        header = [server.stdout.readline() for _ in range(3)]
        assert f"http://127.0.0.1:{port}/" in header[0]
        assert header[2].strip().startswith(f"ssh -N -L {port}:127.0.0.1:{port} ")

        def page():
            try:
                with urllib.request.urlopen(f"http://localhost:{port}/", timeout=10) as r:
                    return r.read().decode()
            except OSError:
                return None

        html = wait_for(f"the page on port {port}", page, seen=lambda: f"exit code {server.poll()}")
        # The websocket goes back to the address the browser used (here `localhost`, an SSH tunnel's too).
        assert f'data-session-websocket-url="ws://localhost:{port}/ws"' in html
    finally:
        stop_group(server)


def test_serve_elsewhere_warns_there_is_no_authentication(tmp_path):
    port = free_port()
    server = start_serve(tmp_path, "--host", "0.0.0.0", "--port", str(port))
    try:
        warning = server.stderr.readline()
        assert "no authentication" in warning and f"0.0.0.0:{port}" in warning
        assert "fix: keep the default --host 127.0.0.1" in server.stderr.readline()
    finally:
        stop_group(server)


def test_serve_says_which_port_is_taken_and_which_run_directory_is_missing(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "floydtui", "serve", "--port", str(port)], cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr and "choose another --port" in done.stderr
    done = subprocess.run([sys.executable, "-m", "floydtui", "serve", "--watch", str(tmp_path / "nope")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "no run directory" in done.stderr and "Traceback" not in done.stderr
