"""A real headless browser for page tests: Chromium driven over the DevTools protocol.

:func:`load_page` opens a file in ``chromium --headless`` with the network pointed nowhere,
waits for its load event, evaluates JavaScript in it and returns the result with every
console message, exception and failed request the page logged. The protocol runs over
``--remote-debugging-pipe`` (JSON messages, NUL-terminated, on the child's fds 3 and 4), so
no port is opened and no websocket library is needed.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

#: Where Debian installs Chromium (CI: ``apt-get install chromium``).
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: Seconds to wait for the browser to start, load the page and answer.
TIMEOUT = 60.0


class _Pipe:
    """Send commands and read answers and events over the DevTools pipe."""

    def __init__(self, to_browser: int, from_browser: int) -> None:
        self.to_browser, self.from_browser = to_browser, from_browser
        self.buffer = b""
        self.events: list[dict[str, Any]] = []
        self.next_id = 0

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.from_browser], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer over the DevTools pipe")
            chunk = os.read(self.from_browser, 1 << 20)
            if not chunk:
                raise EOFError("Chromium closed the DevTools pipe")
            self.buffer += chunk
        message, _, self.buffer = self.buffer.partition(b"\0")
        return json.loads(message)

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        """Send one command and return its result (events met meanwhile are kept)."""
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self.to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT
        while True:
            answer = self._read(deadline)
            if answer.get("id") == self.next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer["result"]
            self.events.append(answer)

    def wait_for(self, method: str) -> dict[str, Any]:
        """The first event named ``method`` (already received, or the next ones)."""
        deadline = time.monotonic() + TIMEOUT
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._read(deadline)
            self.events.append(event)
            if event.get("method") == method:
                return event


def _problems(events: list[dict[str, Any]]) -> list[str]:
    """Console errors and warnings, uncaught exceptions and failed loads, as text."""
    found = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "warning"):
            found.append(
                " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
            )
        elif method == "Runtime.exceptionThrown":
            found.append(params["exceptionDetails"].get("text", "exception"))
        elif method == "Log.entryAdded" and params["entry"]["level"] in ("error", "warning"):
            found.append(params["entry"]["text"])
    return found


def load_page(path: Path, expression: str) -> tuple[Any, list[str]]:
    """Open ``path`` in headless Chromium, evaluate ``expression`` after the load event.

    Returns
    -------
    value
        The expression's value (JSON-serialisable; promises are awaited).
    problems : list of str
        Console errors and warnings, uncaught exceptions and failed loads of the page.
    """
    commands_read, commands_write = os.pipe()
    answers_read, answers_write = os.pipe()

    def child_fds() -> None:  # the pipe ends become fds 3 and 4, whatever their numbers
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (commands_read, answers_write)]
        os.dup2(high[0], 3)
        os.dup2(high[1], 4)

    # Chromium's helper processes may still write the profile as it is removed: tolerated
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        browser = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--disable-gpu",
                "--no-sandbox",
                "--no-first-run",
                "--remote-debugging-pipe",
                f"--user-data-dir={profile}",
                "--proxy-server=127.0.0.1:9",  # nothing outside the file loads
                "--host-resolver-rules=MAP * ~NOTFOUND",
                "about:blank",
            ],
            preexec_fn=child_fds,
            pass_fds=(3, 4),
            start_new_session=True,  # its helper processes in its group, killed with it
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(commands_read)
        os.close(answers_write)
        pipe = _Pipe(commands_write, answers_read)
        try:
            target = pipe.call("Target.createTarget", url="about:blank")["targetId"]
            session = pipe.call("Target.attachToTarget", targetId=target, flatten=True)
            session = session["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                pipe.call(f"{domain}.enable", session)
            pipe.events.clear()
            pipe.call("Page.navigate", session, url=Path(path).resolve().as_uri())
            pipe.wait_for("Page.loadEventFired")
            result = pipe.call(
                "Runtime.evaluate",
                session,
                expression=expression,
                returnByValue=True,
                awaitPromise=True,
            )
            if "exceptionDetails" in result:
                raise RuntimeError(f"the expression failed: {result['exceptionDetails']}")
            value = result["result"].get("value")
            return value, _problems(pipe.events)
        finally:
            os.killpg(browser.pid, signal.SIGKILL)
            browser.wait()
            os.close(commands_write)
            os.close(answers_read)
