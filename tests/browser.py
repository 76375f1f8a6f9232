"""A headless Chromium driven over the Chrome DevTools Protocol, with nothing but aiohttp.

Chromium comes from Debian (`make test` installs it when missing). It gets an ordinary desktop
user agent: `HeadlessChrome` is a bot, and the browser tests are about the tracker.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

DESKTOP_CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/156.0.0.0 Safari/537.36"
)
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run",
    "--remote-debugging-port=0",
]  # fmt: skip


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Page:
    """One tab, attached with a flat CDP session."""

    def __init__(self, browser: Browser, session_id: str) -> None:
        self._browser = browser
        self._session = session_id
        self.errors: list[str] = []
        """What the page's console said at error level, and what it threw."""
        browser.pages[session_id] = self

    def note(self, method: str, params: dict[str, Any]) -> None:
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.errors.append(str(details.get("exception", {}).get("description", details)))
        elif method == "Runtime.consoleAPICalled" and params["type"] in {"error", "assert"}:
            self.errors.append(" ".join(str(a.get("value", a)) for a in params["args"]))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            self.errors.append(f"{params['entry']['text']} ({params['entry'].get('url', '')})")

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        return await self._browser.send(method, params, session=self._session)

    async def goto(self, url: str) -> None:
        await self.send("Page.navigate", url=url)
        for _ in range(100):
            if await self.evaluate("document.readyState") == "complete":
                return
            await asyncio.sleep(0.05)
        raise TimeoutError(f"{url} did not load")

    async def evaluate(self, expression: str) -> Any:
        result = await self.send(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"])
        return result["result"].get("value")

    async def until(self, expression: str, within: float = 20, what: str = "") -> Any:
        """The value of ``expression`` once it is truthy."""
        deadline = time.monotonic() + within
        while not (value := await self.evaluate(expression)):
            if time.monotonic() > deadline:
                raise TimeoutError(what or f"{expression} stayed false for {within:g}s")
            await asyncio.sleep(0.05)
        return value

    async def resize(self, width: int, height: int, *, mobile: bool = False) -> None:
        await self.send("Emulation.setDeviceMetricsOverride", width=width, height=height,
                        deviceScaleFactor=1, mobile=mobile)  # fmt: skip

    async def screenshot(self, path: Path) -> None:
        """The whole page, as PNG (written at once: a test's own small file)."""
        size = (await self.send("Page.getLayoutMetrics"))["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        shot = await self.send("Page.captureScreenshot", format="png", clip=clip,
                               captureBeyondViewport=True)  # fmt: skip
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))  # noqa: ASYNC240


class Browser:
    def __init__(
        self, process: asyncio.subprocess.Process, ws: aiohttp.ClientWebSocketResponse
    ) -> None:
        self._process = process
        self._ws = ws
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.pages: dict[str, Page] = {}
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self._ws:
            payload = message.json()
            if "method" in payload and (page := self.pages.get(payload.get("sessionId", ""))):
                page.note(payload["method"], payload.get("params", {}))
            waiter = self._waiting.pop(payload.get("id", -1), None)
            if waiter is not None and not waiter.done():
                waiter.set_result(payload)

    async def send(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> dict[str, Any]:
        number = next(self._ids)
        message: dict[str, Any] = {"id": number, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        waiter = asyncio.get_running_loop().create_future()
        self._waiting[number] = waiter
        await self._ws.send_json(message)
        reply = await asyncio.wait_for(waiter, 30)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    async def new_page(self) -> Page:
        target = await self.send("Target.createTarget", {"url": "about:blank"})
        attached = await self.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )
        page = Page(self, attached["sessionId"])
        await page.send("Page.enable")
        await page.send("Runtime.enable")
        await page.send("Log.enable")
        return page


@contextlib.asynccontextmanager
async def chromium(profile: Path, user_agent: str = DESKTOP_CHROME) -> AsyncIterator[Browser]:
    path = chromium_path()
    if path is None:
        raise RuntimeError("chromium is not installed (make test installs it)")
    process = await asyncio.create_subprocess_exec(
        path, *FLAGS, f"--user-data-dir={profile}", f"--user-agent={user_agent}", "about:blank",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    active = profile / "DevToolsActivePort"
    for _ in range(200):
        if active.exists() and len(active.read_text().splitlines()) == 2:
            break
        await asyncio.sleep(0.05)
    port, path_on_port = active.read_text().splitlines()
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"ws://127.0.0.1:{port}{path_on_port}", max_msg_size=0) as ws,
    ):
        browser = Browser(process, ws)
        try:
            yield browser
        finally:
            with contextlib.suppress(Exception):
                await browser.send("Browser.close")
            browser._reader.cancel()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()
