"""Every shipped UI workflow opened in ComfyUI's real graph editor (the frontend package ComfyUI serves), in
headless Chromium: listed as this pack's template, loaded the way the template browser loads it, with no
missing node, no dialog, no console error, its links and widget values intact, every Infuse node carrying the
inputs /object_info declares, and opened at a zoom where the editor draws nodes readable (its default settings:
below LiteGraph.Canvas.MinFontSizeForLOD nodes are blank grey boxes) with every node on a 1920x1080 page's canvas.
A screenshot of each lands in the test's tmp_path."""
import json
import os
import shutil
import subprocess
import warnings

import pytest

from e2e.editor.graph_checks import PACK, console_errors, is_thumbnail, workflow_problems
from support.comfy_env import PACK_ROOT

pytestmark = pytest.mark.e2e

EDITOR_DIR = PACK_ROOT / "tests" / "e2e" / "editor"
WORKFLOWS = sorted(p.stem for p in (PACK_ROOT / "workflows").glob("*.json"))
BROWSER_TIMEOUT_S = 300


def chromium_path() -> str | None:
    for candidate in (os.environ.get("INFUSE_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def node_major() -> int:
    if shutil.which("node") is None:
        return 0
    version = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=30).stdout
    return int(version.strip().lstrip("v").split(".")[0] or 0)


@pytest.fixture(scope="session")
def editor_browser() -> str:
    """Chromium, with playwright-core to drive it, or a skip that says what is missing (.ci/run installs
    both). Session-scoped so that it is settled before the server starts."""
    browser, reason = chromium_path(), None
    if browser is None:
        reason = "no Chromium (apt-get install chromium, or set INFUSE_CHROMIUM)"
    elif node_major() < 20:
        reason = "no Node.js 20 or newer to run playwright-core"
    elif not (EDITOR_DIR / "node_modules" / "playwright-core").is_dir():
        if shutil.which("npm") is None:
            reason = "playwright-core is not installed and there is no npm"
        else:
            subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=EDITOR_DIR,
                           check=True, timeout=300)
    if reason:
        print(f"graph-editor test skipped: {reason}")
        pytest.skip(reason)
    return browser


def open_in_editor(browser: str, server, names: list[str], out_dir) -> dict:
    config = {"url": server.url, "chromium": browser, "pack": PACK, "workflows": names, "outDir": str(out_dir),
              "timeoutMs": 90_000}
    (out_dir / "config.json").write_text(json.dumps(config))
    run = subprocess.run(["node", str(EDITOR_DIR / "open_workflows.mjs"), str(out_dir / "config.json")],
                         capture_output=True, text=True, timeout=BROWSER_TIMEOUT_S)
    results_file = out_dir / "results.json"
    assert run.returncode == 0 and results_file.exists(), f"browser run failed:\n{run.stdout}\n{run.stderr}"
    return json.loads(results_file.read_text())


def test_every_shipped_workflow_opens_in_the_graph_editor(editor_browser, server, tmp_path):
    assert WORKFLOWS, "no workflows/*.json"
    templates = server.get("/api/workflow_templates")
    assert sorted(templates.get(PACK, [])) == WORKFLOWS, templates
    results = open_in_editor(editor_browser, server, WORKFLOWS, tmp_path)
    assert sorted(results["templates"].get(PACK, [])) == WORKFLOWS, results["templates"]  # as the page sees it
    # the frontend's own start-up noise is not this pack's business; anything naming the pack is
    startup = console_errors(results["startup"]["console"]) + results["startup"]["dialogs"]
    assert not [e for e in startup if "infuse" in e.lower()], startup
    # the editor's defaults decide how a workflow is drawn: the run sets no drawing setting
    assert "LiteGraph.Canvas.MinFontSizeForLOD" not in results["settings"], results["settings"]
    object_info = server.get("/object_info")
    problems = {}
    for name in WORKFLOWS:
        workflow = json.loads((PACK_ROOT / "workflows" / f"{name}.json").read_text())
        opened = results["workflows"][name]
        if opened.get("screenshot"):
            print(f"editor screenshot of {name}: {opened['screenshot']}")
        if opened.get("view"):
            print(f"{name} opens at zoom {opened['view']['scale']:.2f} (low quality below "
                  f"{opened['view']['lowQualityBelow'] or 0:.2f}: {opened['view']['lowQuality']})")
        problems[name] = workflow_problems(name, workflow, opened, object_info)
    thumbnails = sorted({m["url"].rsplit("/", 1)[-1] for entry in results["workflows"].values()
                         for m in entry["console"] if is_thumbnail(m["url"])})
    if thumbnails:
        warnings.warn(f"the template browser shows grey cards: no thumbnails {thumbnails} in workflows/")
    failed = {name: p for name, p in problems.items() if p}
    assert not failed, json.dumps(failed, indent=1)
