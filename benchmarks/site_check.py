"""The built site in a real browser: screenshots, console errors, and the two columns' layout.

    python benchmarks/site_check.py                         # builds the site into a temporary folder
    python benchmarks/site_check.py --site site --out runs/site_check --json

Runs headless Chromium (``apt-get install -y chromium``; ``--chromium PATH``
for another binary), driven through the DevTools protocol over a pipe
(``--remote-debugging-pipe``: Python's standard library is enough, no
WebSocket client and no browser download). For the index page and the
attention and layernorm pages, at 1280 and at 400 px wide, it

* saves a screenshot (NAME_WIDTH.png in ``--out``);
* collects console errors, uncaught exceptions, failed loads and every request
  that leaves the folder (there must be none: the site is read offline);
* on the code pages, compares the boxes of the first note cell that has code
  beside it with its code cell: at 1280 px they must be side by side (the
  code starts right of the note, on the same rows), at 400 px stacked (the
  code starts below the note, at the same left edge);
* counts the MathML formulas and checks that the browser laid them out (a
  formula of zero size would be MathML the browser does not draw).

``--json`` ends the output with one JSON object; the exit status is 0 when
every check holds, 1 when one fails, 2 when Chromium cannot be started.
``--readme docs/img/site_attention.png`` also writes the README's picture:
the attention page at 1280 px, scrolled to ``attention_backward``, in 64
colours (with Pillow; the full-colour PNG without it).
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PAGES = {"index": "index.html", "attention": "ops/attention.html", "layernorm": "ops/layernorm.html"}
# the section measured on a code page, and shown in a second screenshot (NAME_WIDTH_SECTION.png)
SECTIONS = {"ops/attention.html": "attention_backward", "ops/layernorm.html": "layernorm_backward"}
CODE_PAGES = ("ops/attention.html", "ops/layernorm.html")   # where the two columns must be measured
WIDTHS = (1280, 400)
HEIGHT = 900
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--remote-debugging-pipe"]

# The boxes of a section's note and code (the one named, else the first after the file's docstring that has
# both); how many formulas, and how many drawn.
MEASURE = """((wanted) => {
  const sec = document.getElementById(wanted) || [...document.querySelectorAll('.sec:not(.intro)')].find(s =>
      s.querySelector('.note').innerText.trim().length > 40 && s.querySelector('.code .line'));
  const box = el => { const r = el.getBoundingClientRect();
      return {left: r.left, top: r.top + scrollY, right: r.right, bottom: r.bottom + scrollY,
              width: r.width, height: r.height}; };
  const maths = [...document.querySelectorAll('math')];
  return JSON.stringify({
    note: sec ? box(sec.querySelector('.note')) : null,
    code: sec ? box(sec.querySelector('.code')) : null,
    section: sec ? sec.id : null,
    formulas: maths.length,
    drawn: maths.filter(m => { const r = m.getBoundingClientRect(); return r.width > 0 && r.height > 0; }).length,
    page_width: document.documentElement.scrollWidth,
    viewport: innerWidth});
})(%s)"""


class Browser:
    """Chromium over the DevTools pipe: fd 3 carries commands in, fd 4 replies and events out,
    each message JSON ended by a NUL byte."""

    def __init__(self, binary: str, profile: str):
        import fcntl
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        # the child's ends above 9, so that putting them on 3 and 4 overwrites neither
        ends = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_chrome_r, from_chrome_w)]
        os.close(to_chrome_r)
        os.close(from_chrome_w)

        def fds():   # in the child, before the other descriptors are closed: the ends on 3 and 4
            os.dup2(ends[0], 3)
            os.dup2(ends[1], 4)
        self.proc = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                     preexec_fn=fds, pass_fds=(3, 4, *ends),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for fd in ends:
            os.close(fd)
        self._buffer = b""
        self._id = 0
        self.events = []

    def _read(self, timeout: float) -> dict:
        import select
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_chrome], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer")
            chunk = os.read(self._from_chrome, 1 << 16)
            if not chunk:
                raise ConnectionError("Chromium closed the DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30.0):
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read(timeout)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, session: str, timeout: float = 30.0) -> dict:
        for i, event in enumerate(self.events):
            if event.get("method") == method and event.get("sessionId") == session:
                return self.events.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            event = self._read(max(0.01, deadline - time.monotonic()))
            if event.get("method") == method and event.get("sessionId") == session:
                return event
            self.events.append(event)

    def close(self):
        try:
            self.send("Browser.close", timeout=5)
        except Exception:   # already gone: nothing to close
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        for fd in (self._to_chrome, self._from_chrome):
            try:
                os.close(fd)
            except OSError:
                pass


def problems_in(events: list, session: str) -> tuple:
    """(console errors, requests that leave the folder) among a page's events."""
    errors, external = [], []
    for e in events:
        if e.get("sessionId") != session:
            continue
        method, p = e.get("method"), e.get("params", {})
        if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            errors.append("console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p["args"]))
        elif method == "Runtime.exceptionThrown":
            errors.append("exception: " + p["exceptionDetails"].get("text", ""))
        elif method == "Log.entryAdded" and p["entry"].get("level") == "error":
            errors.append(f"log: {p['entry'].get('text', '')} {p['entry'].get('url', '')}".strip())
        elif method == "Network.loadingFailed":
            errors.append(f"failed to load: {p.get('errorText', '')}")
        elif method == "Network.requestWillBeSent":
            url = p["request"]["url"]
            if not url.startswith(("file:", "data:", "about:")):
                external.append(url)
    return errors, external


def layout(m: dict) -> str:
    """"side by side", "stacked" or "other", from the note's and the code's boxes."""
    note, code = m["note"], m["code"]
    if note is None or code is None:
        return "none"
    if code["left"] >= note["right"] - 1 and code["top"] < note["bottom"] and abs(code["top"] - note["top"]) < 2:
        return "side by side"
    if code["top"] >= note["bottom"] - 1 and abs(code["left"] - note["left"]) < 2:
        return "stacked"
    return "other"


def check_site(site: Path, out: Path, binary: str, pages: dict = PAGES, full: bool = False) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    profile = tempfile.mkdtemp(prefix="site_check_profile_")
    browser = Browser(binary, profile)
    rows = []
    try:
        browser.send("Browser.getVersion")
        for name, page in pages.items():
            for width in WIDTHS:
                target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
                session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
                for domain in ("Page", "Runtime", "Log", "Network"):
                    browser.send(f"{domain}.enable", session=session)
                browser.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": HEIGHT,
                             "deviceScaleFactor": 1, "mobile": width < 800}, session=session)
                browser.send("Page.navigate", {"url": (site / page).resolve().as_uri()}, session=session)
                browser.wait_for("Page.loadEventFired", session)
                time.sleep(0.3)   # late console messages
                wanted = SECTIONS.get(page)
                m = json.loads(browser.send("Runtime.evaluate", {"expression": MEASURE % json.dumps(wanted),
                                                                 "returnByValue": True},
                                            session=session)["result"]["value"])
                params = {"format": "png"}
                if full:   # the whole page, not just the window
                    size = browser.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
                    params.update(captureBeyondViewport=True, clip={"x": 0, "y": 0, "width": width,
                                                                   "height": min(size["height"], 16000), "scale": 1})
                shot = browser.send("Page.captureScreenshot", params, session=session)["data"]
                (out / f"{name}_{width}.png").write_bytes(base64.b64decode(shot))
                shots = [str(out / f"{name}_{width}.png")]
                if wanted and m["section"] == wanted and not full:   # the section, below the sticky header
                    browser.send("Runtime.evaluate", {"expression": f"document.getElementById({json.dumps(wanted)})"
                                                                    f".scrollIntoView(); scrollBy(0, -300)"},
                                 session=session)
                    shot = browser.send("Page.captureScreenshot", {"format": "png"}, session=session)["data"]
                    (out / f"{name}_{width}_{wanted}.png").write_bytes(base64.b64decode(shot))
                    shots.append(str(out / f"{name}_{width}_{wanted}.png"))
                errors, external = problems_in(browser.events, session)
                browser.events = [e for e in browser.events if e.get("sessionId") != session]
                browser.send("Target.closeTarget", {"targetId": target})
                rows.append({"page": page, "width": width, "layout": layout(m), "section": m["section"],
                             "note": m["note"], "code": m["code"], "formulas": m["formulas"],
                             "formulas_drawn": m["drawn"], "horizontal_overflow": m["page_width"] > m["viewport"],
                             "console_errors": errors, "external_requests": external,
                             "screenshots": shots})
    finally:
        browser.close()
        shutil.rmtree(profile, ignore_errors=True)
    failures = []
    for r in rows:
        want = "side by side" if r["width"] >= 800 else "stacked"
        if r["layout"] != want and (r["layout"] != "none" or r["page"] in CODE_PAGES):
            failures.append(f"{r['page']} at {r['width']} px: columns {r['layout']}, expected {want}")
        if r["console_errors"]:
            failures.append(f"{r['page']} at {r['width']} px: {r['console_errors']}")
        if r["external_requests"]:
            failures.append(f"{r['page']} at {r['width']} px requested {r['external_requests']}")
        if r["formulas_drawn"] != r["formulas"]:
            failures.append(f"{r['page']} at {r['width']} px: {r['formulas'] - r['formulas_drawn']} formulas not drawn")
        if r["horizontal_overflow"]:
            failures.append(f"{r['page']} at {r['width']} px: the page is wider than the window")
    return {"site": str(site), "chromium": binary, "rows": rows, "failures": failures, "passed": not failures}


def small_png(source: Path, target: Path) -> str:
    """``source`` in 64 colours at ``target`` (a screenshot of text and flat colours loses nothing visible)."""
    try:
        from PIL import Image
    except ImportError:
        shutil.copyfile(source, target)
        return str(target)
    image = Image.open(source).convert("RGB")
    image.quantize(colors=64, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(target, optimize=True)
    return str(target)


def find_chromium(given: str | None) -> str | None:
    for candidate in ([given] if given else ["chromium", "chromium-browser", "google-chrome"]):
        found = shutil.which(candidate) if candidate else None
        if found:
            return found
    return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--site", type=Path, help="a folder built by npformer docs (default: build one now)")
    ap.add_argument("--out", type=Path, default=Path("runs/site_check"), help="where the screenshots go")
    ap.add_argument("--chromium", help="the browser binary (default: chromium on the PATH)")
    ap.add_argument("--full", action="store_true", help="screenshots of whole pages, not the first screen")
    ap.add_argument("--page", action="append", metavar="NAME=PATH",
                    help="check this page of the site instead (repeatable), e.g. derivations=derivations.html")
    ap.add_argument("--readme", type=Path, metavar="PNG",
                    help="write the README's picture of the attention page here (docs/img/site_attention.png)")
    ap.add_argument("--json", action="store_true", help="end with one JSON object")
    args = ap.parse_args(argv)
    binary = find_chromium(args.chromium)
    if binary is None:
        print("site_check: no Chromium found (apt-get install -y chromium, or --chromium PATH)", file=sys.stderr)
        return 2
    built = None
    site = args.site
    if site is None:
        from npformer.site.build import build_site
        built = tempfile.mkdtemp(prefix="site_check_site_")
        site = Path(built)
        print(f"built the site in {build_site(site)['seconds']:.1f} s", file=sys.stderr)
    try:
        pages = dict(p.split("=", 1) for p in args.page) if args.page else PAGES
        result = check_site(site, args.out, binary, pages, args.full)
    except (OSError, TimeoutError, ConnectionError) as e:
        print(f"site_check: cannot drive {binary}: {e}", file=sys.stderr)
        return 2
    finally:
        if built:
            shutil.rmtree(built, ignore_errors=True)
    if built:
        result["site"] = "(a temporary build)"
    for r in result["rows"]:
        n, c = r["note"] or {}, r["code"] or {}
        print(f"{r['page']:<22} {r['width']:>5} px  {r['layout']:<13} note x {n.get('left', 0):.0f}-"
              f"{n.get('right', 0):.0f} y {n.get('top', 0):.0f}-{n.get('bottom', 0):.0f}  code x "
              f"{c.get('left', 0):.0f}-{c.get('right', 0):.0f} y {c.get('top', 0):.0f}  formulas "
              f"{r['formulas_drawn']}/{r['formulas']}  console errors {len(r['console_errors'])}  "
              f"external requests {len(r['external_requests'])}")
    for f in result["failures"]:
        print("FAIL", f)
    if args.readme:
        shot = args.out / "attention_1280_attention_backward.png"
        result["readme"] = small_png(shot, args.readme)
        print(f"wrote {args.readme} ({args.readme.stat().st_size:,} bytes)")
    if args.json:
        print(json.dumps(result))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
