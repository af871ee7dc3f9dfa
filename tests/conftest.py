"""Shared test setup: find ComfyUI (COMFYUI_PATH, the ComfyUI holding this pack, ~/comfy/ComfyUI) and load
the pack under the module name `comfyui_infuse`, the way ComfyUI itself runs its __init__."""
import pytest

from support import comfy_env

COMFYUI = comfy_env.find_comfyui()
if COMFYUI is not None:
    comfy_env.import_comfyui()
    comfy_env.load_pack()
else:
    comfy_env.bare_pack()


def pytest_report_header(config):
    return f"ComfyUI: {COMFYUI or 'not found (integration and e2e tests skip)'}"


def pytest_collection_modifyitems(config, items):
    if COMFYUI is not None:
        return
    skip = pytest.mark.skip(reason="no ComfyUI runtime found: set COMFYUI_PATH or run ../shared/comfyui-checkout.sh")
    for item in items:
        if "/integration/" in str(item.fspath) or "/e2e/" in str(item.fspath):
            item.add_marker(skip)
