"""benchmarks/site_check.py in headless Chromium: no console errors, nothing fetched from outside,
the two columns side by side at 1280 px and stacked at 400 px, and one JSON object last.
Skips where Chromium or the docs extra is not installed (CI has no Chromium)."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from npformer import site

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "site_check.py"


@pytest.mark.skipif(shutil.which("chromium") is None, reason="no Chromium (apt-get install chromium)")
@pytest.mark.skipif(bool(site.missing()), reason="the docs extra is not installed")
def test_the_site_in_chromium(tmp_path):
    from npformer.site.build import build_site
    build_site(tmp_path / "site")
    run = subprocess.run([sys.executable, str(SCRIPT), "--site", str(tmp_path / "site"), "--out",
                          str(tmp_path / "shots"), "--readme", str(tmp_path / "readme.png"), "--json"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["passed"] and not result["failures"]
    rows = {(r["page"], r["width"]): r for r in result["rows"]}
    assert set(rows) == {(p, w) for p in ("index.html", "ops/attention.html", "ops/layernorm.html")
                         for w in (1280, 400)}
    for r in rows.values():
        assert r["console_errors"] == [] and r["external_requests"] == []
        assert r["formulas_drawn"] == r["formulas"]
        for shot in r["screenshots"]:
            assert Path(shot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    wide, narrow = rows["ops/attention.html", 1280], rows["ops/attention.html", 400]
    assert wide["layout"] == "side by side" and wide["section"] == "attention_backward"
    assert wide["code"]["left"] >= wide["note"]["right"] and wide["code"]["top"] == wide["note"]["top"]
    assert narrow["layout"] == "stacked" and narrow["code"]["top"] >= narrow["note"]["bottom"]
    assert rows["index.html", 1280]["formulas"] > 0
    assert (tmp_path / "readme.png").stat().st_size < 200_000


def test_no_chromium_is_exit_2(tmp_path):
    run = subprocess.run([sys.executable, str(SCRIPT), "--site", str(tmp_path), "--chromium", "no-such-browser"],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert run.returncode == 2 and "no Chromium found" in run.stderr
