#!/usr/bin/env python3
"""Opens echoplex's page in headless Chromium and reads the live DOM over
the DevTools protocol (tests/page.rs and scripts/page-screenshot use it).

    browser.py PAGE_URL [--status URL] [--samples N] [--screenshot FILE]
               [--width W --height H] [--phone-width W]

Prints one JSON object:
  samples      [{before, dom, after}]: /status read just before, the page's
               data-stat elements ({stat, reactor, text}) after the page
               drew a summary it fetched after `before`, /status just after
  peers        the texts of the connection list's peer cells
  elements     counts of <img>, <script>, <iframe>, <object> in the page
  pwned        whether window.pwned was set (a hostile text ran)
  errors       exceptions and console/log errors (CSP violations land here)
  phone        {width, scroll_width} at --phone-width
  screenshot   {file, width, height} of the PNG written

Why the DevTools protocol and not --dump-dom: the page polls every second
forever, and virtual time runs its clock faster than the wall clock.
"""

import argparse
import asyncio
import base64
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
import zlib

import websockets

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",  # as root, Chromium refuses to start without it
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--mute-audio",
    "--remote-debugging-port=0",
]

DEADLINE = 90.0


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("no chromium on PATH (scripts/test-all installs it)")


class Session:
    def __init__(self, ws):
        self.ws = ws
        self.next_id = 0
        self.session = None
        self.events = []

    async def call(self, method, params=None, session=True):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        await self.ws.send(json.dumps(message))
        while True:
            reply = json.loads(await asyncio.wait_for(self.ws.recv(), 30))
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    async def js(self, expression):
        result = await self.call(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True}
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression, what, timeout=30.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            value = await self.js(expression)
            if value:
                return value
            await asyncio.sleep(0.05)
        seen = [
            e["params"] for e in self.events
            if e.get("method") in ("Runtime.exceptionThrown", "Log.entryAdded", "Runtime.consoleAPICalled")
        ]
        status = await self.js("(document.getElementById('status') || {}).textContent")
        raise RuntimeError(f"timed out waiting for {what}; status {status!r}; page said {seen}")

    async def next_update(self, timeout=15.0):
        """Waits until the page has drawn a summary it asked for after now."""
        start = await self.js("Date.now()")
        # data-updated is set after drawing; the fetch began at most 1 s
        # before. Two draws after `start` guarantee one fetched after it.
        for _ in range(2):
            await self.wait_for(
                f"Number(document.body.getAttribute('data-updated') || 0) > {start}",
                "the page to redraw",
                timeout,
            )
            start = await self.js("Date.now()")


def get_json(url):
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.loads(answer.read())


def png_size(data):
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise RuntimeError("not a PNG")
    return struct.unpack(">II", data[16:24])


def distinct_rows(data, width):
    """How many different scanlines the PNG has (a blank page: one or two)."""
    at, idat = 8, b""
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind = data[at + 4 : at + 8]
        if kind == b"IDAT":
            idat += data[at + 8 : at + 8 + length]
        at += 12 + length
    raw = zlib.decompress(idat)
    depth, colour = data[24], data[25]
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour]
    stride = 1 + (width * channels * depth + 7) // 8
    return len({raw[i : i + stride] for i in range(0, len(raw), stride)})


DOM_FIGURES = """
Array.from(document.querySelectorAll('[data-stat]')).map(e => ({
  stat: e.getAttribute('data-stat'),
  reactor: e.hasAttribute('data-reactor') ? Number(e.getAttribute('data-reactor')) : null,
  text: e.textContent,
}))
"""


async def run(args):
    profile = tempfile.mkdtemp(prefix="echoplex-chromium-")
    process = subprocess.Popen(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        port_file = os.path.join(profile, "DevToolsActivePort")
        end = time.monotonic() + 30
        while not (os.path.exists(port_file) and len(open(port_file).read().split()) >= 2):
            if process.poll() is not None or time.monotonic() > end:
                raise RuntimeError("chromium did not open its DevTools port")
            await asyncio.sleep(0.05)
        port, path = open(port_file).read().split()[:2]
        async with websockets.connect(
            f"ws://127.0.0.1:{port}{path}", max_size=64 << 20
        ) as ws:
            cdp = Session(ws)
            target = await cdp.call("Target.createTarget", {"url": "about:blank"})
            attached = await cdp.call(
                "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
            )
            cdp.session = attached["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                await cdp.call(f"{domain}.enable")
            await cdp.call(
                "Emulation.setDeviceMetricsOverride",
                {"width": args.width, "height": args.height, "deviceScaleFactor": 1, "mobile": False},
            )
            await cdp.call("Page.navigate", {"url": args.url})
            await cdp.wait_for(
                "document.body && document.body.hasAttribute('data-updated')",
                "the page's first summary",
            )
            out = {"samples": []}
            for _ in range(args.samples):
                before = get_json(args.status) if args.status else None
                await cdp.next_update()
                dom = await cdp.js(DOM_FIGURES)
                after = get_json(args.status) if args.status else None
                out["samples"].append({"before": before, "dom": dom, "after": after})
            if args.settle:
                await asyncio.sleep(args.settle)
                await cdp.next_update()
            out["peers"] = await cdp.js(
                "Array.from(document.querySelectorAll('td.peer')).map(e => e.textContent)"
            )
            out["peer_children"] = await cdp.js(
                "Array.from(document.querySelectorAll('td.peer')).reduce((n, e) => n + e.children.length, 0)"
            )
            out["elements"] = await cdp.js(
                "({img: document.querySelectorAll('img').length,"
                " script: document.querySelectorAll('script').length,"
                " iframe: document.querySelectorAll('iframe').length,"
                " object: document.querySelectorAll('object,embed').length,"
                " svg: document.querySelectorAll('svg').length})"
            )
            out["pwned"] = await cdp.js("window.pwned === true")
            if args.screenshot:
                shot = await cdp.call("Page.captureScreenshot", {"format": "png"})
                data = base64.b64decode(shot["data"])
                with open(args.screenshot, "wb") as file:
                    file.write(data)
                width, height = png_size(data)
                out["screenshot"] = {
                    "file": args.screenshot,
                    "width": width,
                    "height": height,
                    "bytes": len(data),
                    "distinct_rows": distinct_rows(data, width),
                }
            if args.phone_width:
                await cdp.call(
                    "Emulation.setDeviceMetricsOverride",
                    {"width": args.phone_width, "height": 800, "deviceScaleFactor": 1, "mobile": True},
                )
                await cdp.next_update()
                out["phone"] = await cdp.js(
                    "({width: window.innerWidth, scroll_width: document.documentElement.scrollWidth})"
                )
            errors = []
            for event in cdp.events:
                method = event.get("method", "")
                params = event.get("params", {})
                if method == "Runtime.exceptionThrown":
                    errors.append(params.get("exceptionDetails", {}).get("text", "exception"))
                elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                    entry = params["entry"]
                    # The page asks for no favicon; Chromium's own request 404s.
                    if "favicon" not in entry.get("url", "") + entry.get("text", ""):
                        errors.append(entry.get("text", "error"))
            out["errors"] = errors
            try:
                await cdp.call("Browser.close", session=False)
            except Exception:
                pass
            return out
    finally:
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        shutil.rmtree(profile, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("url")
    parser.add_argument("--status", help="a /status URL to read around each sample")
    parser.add_argument("--samples", type=int, default=1)
    parser.add_argument("--settle", type=float, default=0.0, help="seconds to wait before the last reads")
    parser.add_argument("--screenshot")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--phone-width", type=int, default=0)
    args = parser.parse_args()
    out = asyncio.run(asyncio.wait_for(run(args), DEADLINE))
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
