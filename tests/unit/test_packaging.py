"""Packaging: one source of dependencies, install commands that leave one onnxruntime, the Comfy Registry archive.

- pyproject.toml is the source; requirements.txt (ComfyUI-Manager, the registry) repeats its `dependencies`.
- The archive `comfy node pack` builds: comfy-cli's own `zip_files` where comfy-cli is installed, else its rule
  restated (comfy_cli/file_utils.py): the git-tracked files (every file where git has no answer) minus the
  patterns of `.comfyignore`, read as pathspec "gitwildmatch", paths in `[tool.comfy] includes` forced back in.
"""
import os
import re
import struct
import subprocess
import warnings
import zipfile
from pathlib import Path

import pytest

from comfyui_infuse.extractors.deps import PIP_NAMES

try:
    import tomllib
except ModuleNotFoundError:   # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ("__init__.py", "nodes", "core", "mechanisms", "extractors", "workflows", "pyproject.toml", "requirements.txt",
           "README.md", "LICENSE", "icon.png")
LEFT_OUT = ("tests", "bench", ".ci")


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def name_of(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def readme_install() -> str:
    text = (ROOT / "README.md").read_text()
    return text[text.index("## Install\n"):text.index("\n## ", text.index("## Install\n") + 1)]


# --- dependencies ---------------------------------------------------------------------------------------------
def test_requirements_txt_is_pyprojects_dependencies():
    want = pyproject()["project"]["dependencies"]
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    assert [line.replace(" ", "") for line in lines if line] == [r.replace(" ", "") for r in want]


def test_no_extra_installs_two_onnxruntimes():
    """insightface 2.x requires `onnxruntime`: an extra with insightface and onnxruntime-gpu installs both."""
    for extra, reqs in pyproject()["project"]["optional-dependencies"].items():
        names = {name_of(r) for r in reqs}
        assert not ({"onnxruntime", "onnxruntime-gpu"} <= names), extra
        assert not ({"insightface", "onnxruntime-gpu"} <= names), extra


def test_readme_install_commands_leave_one_onnxruntime():
    install = readme_install()
    commands = [line.strip() for line in install.splitlines() if line.strip().startswith("python -m pip")]
    assert "python -m pip install insightface onnxruntime" in commands                      # CPU
    cuda = ["python -m pip install insightface", "python -m pip uninstall -y onnxruntime onnxruntime-gpu",
            "python -m pip install onnxruntime-gpu"]
    assert any(commands[i:i + 3] == cuda for i in range(len(commands)))                        # CUDA, in order
    assert not any("onnxruntime-gpu" in c and "insightface" in c for c in commands)


def test_the_pip_names_the_errors_give_are_the_readmes():
    """Every module a node `require`s is installed, in the errors' fix, by the name the README gives."""
    required = set()
    for folder in ("extractors", "mechanisms", "nodes"):
        for path in (ROOT / folder).rglob("*.py"):
            required |= set(re.findall(r"""require\(\s*["']([\w.]+)["']""", path.read_text()))
    assert {"insightface", "onnxruntime", "open_clip"} <= required
    install = readme_install()
    for module in sorted(required):
        assert module in PIP_NAMES, module
        pip_name = re.escape(PIP_NAMES[module])
        assert re.search(rf"pip install [^\n`]*\b{pip_name}(?![\w-])|`{pip_name}`", install), module


# --- the Comfy Registry archive -------------------------------------------------------------------------------
def tracked_files() -> list[str]:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "ls-files"], capture_output=True, text=True, check=True).stdout
        files = [f for f in out.splitlines() if f.strip()]
    except (OSError, subprocess.CalledProcessError):
        files = []
    if files:
        return files
    return [str(p.relative_to(ROOT)).replace(os.sep, "/") for p in ROOT.rglob("*")     # comfy-cli: walk everything
            if p.is_file() and ".git" not in p.relative_to(ROOT).parts]


def comfyignore_spec():
    pathspec = pytest.importorskip("pathspec", reason="pathspec (the test extra) reads .comfyignore as comfy-cli does")
    lines = (ROOT / ".comfyignore").read_text(encoding="utf-8").splitlines(keepends=True)
    patterns = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    with warnings.catch_warnings():   # pathspec 1.x deprecates the name comfy-cli uses; the rule is the same
        warnings.simplefilter("ignore", DeprecationWarning)
        return pathspec.PathSpec.from_lines("gitwildmatch", patterns)


def restated_pack(files: list[str]) -> set[str]:
    spec = comfyignore_spec()
    includes = [os.path.normpath(i.lstrip("/")).replace(os.sep, "/") for i in pyproject()["tool"]["comfy"]["includes"]]
    forced = lambda f: any(f == i or f.startswith(i + "/") for i in includes)
    packed = {f for f in files if forced(f) or not spec.match_file(f)}
    for include in includes:
        path = ROOT / include
        packed |= {str(p.relative_to(ROOT)).replace(os.sep, "/") for p in ([path] if path.is_file() else path.rglob("*"))
                   if p.is_file() and not spec.match_file(str(p.relative_to(ROOT)))}
    return packed


def comfy_cli_pack(tmp_path, monkeypatch) -> set[str] | None:
    try:
        from comfy_cli.file_utils import zip_files
    except Exception:   # comfy-cli is not a dependency
        return None
    monkeypatch.chdir(ROOT)
    zip_files(str(tmp_path / "node.zip"), includes=pyproject()["tool"]["comfy"]["includes"])
    with zipfile.ZipFile(tmp_path / "node.zip") as z:
        return set(z.namelist())


def test_registry_archive_leaves_out_tests_bench_and_ci_and_ships_the_pack(tmp_path, monkeypatch):
    files = tracked_files()
    packed = comfy_cli_pack(tmp_path, monkeypatch)
    if packed is None:
        packed = restated_pack(files)
    under = lambda top: [f for f in files if f == top or f.startswith(top + "/")]
    for top in LEFT_OUT:
        assert under(top), f"nothing under {top}/ to check"
        assert not set(under(top)) & packed, f"{top}/ would be shipped"
    for top in SHIPPED:
        assert under(top), f"{top} is not in the repository (or not tracked)"
        assert set(under(top)) <= packed, f"{top} would be left out: {sorted(set(under(top)) - packed)[:5]}"
    assert not [f for f in packed if "/" in f and f.split("/")[0] in LEFT_OUT]


def test_icon_is_a_registry_icon_and_tool_comfy_icon_names_it_by_url():
    data = (ROOT / "icon.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert 0 < width <= 800 and 0 < height <= 400, (width, height)   # the registry's limit
    icon = pyproject()["tool"]["comfy"]["Icon"]
    assert icon == "" or (re.match(r"https://\S+$", icon) and icon.endswith("/icon.png")), icon
