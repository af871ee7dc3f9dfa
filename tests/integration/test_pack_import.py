"""Importing the pack: light (no insightface / onnxruntime / open_clip), folders registered, yaml kept."""
import subprocess
import sys
import textwrap

import pytest

from comfyui_infuse.core.errors import InfuseError, reported_as
from comfyui_infuse.extractors.deps import require
from support.comfy_env import PACK_ROOT, find_comfyui


def run_python(code: str) -> str:
    prelude = f"""
import sys
sys.path.insert(0, {str(PACK_ROOT / 'tests')!r})
from support.comfy_env import import_comfyui, load_pack
import_comfyui()
"""
    out = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True,
                         timeout=120, cwd=str(find_comfyui()))
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_import_and_node_registration_load_no_heavy_dependency():
    stdout = run_python("""
        import asyncio
        pack = load_pack()
        nodes = asyncio.run(asyncio.run(pack.comfy_entrypoint()).get_node_list())
        heavy = sorted({m.split('.')[0] for m in sys.modules} & {'insightface', 'onnxruntime', 'open_clip'})
        print('nodes', len(nodes), 'heavy', heavy)
    """)
    assert "heavy []" in stdout and "nodes 0" not in stdout


def test_model_folders_registered_and_extra_model_paths_entries_kept(tmp_path):
    yaml = tmp_path / "extra_model_paths.yaml"
    yaml.write_text(f"mine:\n    base_path: {tmp_path}\n    ipadapter: my_adapters\n    instantid: |\n        a\n        b\n")
    stdout = run_python(f"""
        import folder_paths
        from utils.extra_config import load_extra_path_config
        load_extra_path_config({str(yaml)!r})          # what main.py does before loading custom nodes
        load_pack()
        for name in ('ipadapter', 'instantid', 'insightface', 'photomaker', 'pulid'):
            paths, exts = folder_paths.folder_names_and_paths[name]
            print(name, paths, sorted(exts))
    """)
    lines = dict(line.split(" ", 1) for line in stdout.strip().splitlines())
    assert str(tmp_path / "my_adapters") in lines["ipadapter"] and "models/ipadapter" in lines["ipadapter"]
    assert ".safetensors" in lines["ipadapter"]
    assert str(tmp_path / "a") in lines["instantid"] and str(tmp_path / "b") in lines["instantid"]
    assert "'.onnx'" in lines["insightface"]
    assert all("models/" + n in lines[n] for n in ("photomaker", "pulid", "insightface"))


def test_missing_optional_dependency_names_import_error_and_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "insightface", None)    # Python's own way to make an import fail
    with pytest.raises(InfuseError) as e, reported_as("Infuse Face Analysis"):
        require("insightface")
    msg = str(e.value)
    assert msg.startswith("Infuse Face Analysis: this node needs the Python package 'insightface'")
    assert str(e.value.__cause__) in msg and f'"{sys.executable}" -m pip install insightface' in msg
    assert isinstance(e.value.__cause__, ImportError)


def test_broken_optional_dependency_shows_its_own_import_error(tmp_path, monkeypatch):
    (tmp_path / "onnxruntime").mkdir()
    (tmp_path / "onnxruntime" / "__init__.py").write_text("raise ImportError('libonnxruntime.so.1: cannot open')")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "onnxruntime", raising=False)
    with pytest.raises(InfuseError) as e:
        require("onnxruntime")
    assert "(ImportError: libonnxruntime.so.1: cannot open)" in str(e.value)
    assert "-m pip install onnxruntime-gpu" in str(e.value)


def test_find_model_file_lists_the_folders_searched():
    import folder_paths

    from comfyui_infuse.nodes.folders import find_model_file

    with pytest.raises(InfuseError) as e, reported_as("Infuse IP-Adapter Loader"):
        find_model_file("ipadapter", "nope.safetensors", "ipadapter_file")
    msg = str(e.value)
    assert msg.startswith("Infuse IP-Adapter Loader, input 'ipadapter_file': model file 'nope.safetensors'")
    for folder in folder_paths.get_folder_paths("ipadapter"):
        assert folder in msg
