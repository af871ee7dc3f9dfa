"""A missing optional dependency is named by the error, with its exact pip command: the module the node asked
for, or the one *it* imports that is missing (insightface installed without onnxruntime names onnxruntime)."""
import importlib.util
import sys

import pytest

from comfyui_infuse.core.errors import InfuseError
from comfyui_infuse.extractors.deps import PIP_NAMES, require

NODE = "Infuse Face Analysis"
ORT_COMMAND = f'"{sys.executable}" -m pip install onnxruntime-gpu'


@pytest.fixture
def clean_modules(monkeypatch):
    """Modules imported during the test are dropped afterwards (a failed import may leave half a package)."""
    before = set(sys.modules)
    yield monkeypatch
    for name in set(sys.modules) - before:
        sys.modules.pop(name, None)


def forget(monkeypatch, package):
    for name in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        monkeypatch.delitem(sys.modules, name)


def missing_error(module):
    with pytest.raises(InfuseError) as e:
        require(module)
    return e.value


def assert_names_onnxruntime(error, importer):
    assert error.problem.startswith(f"this node needs the Python package 'onnxruntime' (imported by '{importer}'")
    assert ORT_COMMAND in error.fix
    assert f"pip install {importer}" not in error.fix
    assert "onnxruntime" in PIP_NAMES and PIP_NAMES["onnxruntime"] == "onnxruntime-gpu"


@pytest.mark.skipif(importlib.util.find_spec("insightface") is None, reason="insightface is not installed")
def test_insightface_without_onnxruntime_names_onnxruntime(clean_modules):
    clean_modules.setitem(sys.modules, "onnxruntime", None)     # Python's own way to make an import fail
    forget(clean_modules, "insightface")
    error = missing_error("insightface")
    assert_names_onnxruntime(error, "insightface")
    assert isinstance(error.__cause__, ImportError)


@pytest.mark.parametrize("reraise", ["raise ImportError('Unable to import dependency onnxruntime.')",   # 0.7.3
                                     "raise ImportError('InsightFace requires ONNX Runtime') from exc"])  # 2.x
def test_a_dependency_hidden_behind_a_bare_import_error_is_found(clean_modules, tmp_path, reraise):
    """insightface's __init__ re-raises a bare ImportError (no `.name`): the one it wraps names the module."""
    (tmp_path / "fakeface").mkdir()
    (tmp_path / "fakeface" / "__init__.py").write_text(f"try:\n    import onnxruntime\nexcept ImportError as exc:\n"
                                                       f"    {reraise}\n")
    clean_modules.syspath_prepend(str(tmp_path))
    clean_modules.setitem(sys.modules, "onnxruntime", None)
    assert_names_onnxruntime(missing_error("fakeface"), "fakeface")


def test_a_missing_import_of_an_installed_package_is_named_with_its_pip_name(clean_modules, tmp_path):
    (tmp_path / "fakeface").mkdir()
    (tmp_path / "fakeface" / "__init__.py").write_text("import skimage.transform\n")
    clean_modules.syspath_prepend(str(tmp_path))
    clean_modules.setitem(sys.modules, "skimage", None)
    error = missing_error("fakeface")
    assert "Python package 'skimage' (imported by 'fakeface'" in error.problem
    assert f'"{sys.executable}" -m pip install scikit-image ;' in error.fix


def test_a_missing_package_is_named_itself(clean_modules):
    clean_modules.setitem(sys.modules, "insightface", None)
    error = missing_error("insightface")
    assert error.problem.startswith("this node needs the Python package 'insightface', which could not be imported")
    assert f'"{sys.executable}" -m pip install insightface ;' in error.fix
