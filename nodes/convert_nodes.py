"""Convert a pickled weights file (.bin) to .safetensors, beside it, once."""
import os

import folder_paths
from comfy_api.latest import io, ui

from ..core.files import PICKLE_SUFFIXES, convert_to_safetensors
from .base import InfuseNode
from .folders import find_model_file

FOLDERS = ("ipadapter", "instantid", "photomaker", "pulid")


def _pickled_files() -> list[str]:
    return [f"{folder}/{name}" for folder in FOLDERS for name in folder_paths.get_filename_list(folder)
            if name.endswith(PICKLE_SUFFIXES)]


class InfuseConvertToSafetensors(InfuseNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="InfuseConvertToSafetensors", display_name="Infuse Convert .bin to .safetensors",
            category="infuse/load", is_output_node=True,
            description="Writes a .safetensors copy of a .bin model file beside it (read without running code), "
                        "e.g. InstantX's Flux ip-adapter.bin. Queue it once; then pick the new file in the loader.",
            inputs=[io.Combo.Input("weights_file", options=_pickled_files(),
                                   tooltip="A .bin / .pt file from models/ipadapter, instantid, photomaker or pulid "
                                           "(shown as folder/name). An existing .safetensors of the same name is "
                                           "never overwritten.")],
            outputs=[io.String.Output("info", display_name="info", tooltip="Where the converted file was written.")],
        )

    @classmethod
    def execute(cls, weights_file) -> io.NodeOutput:
        folder, _, name = weights_file.partition("/")
        target = convert_to_safetensors(find_model_file(folder, name, "weights_file"), "weights_file")
        info = f"wrote {os.path.basename(target)} in {os.path.dirname(target)}; refresh to pick it in the loader."
        return io.NodeOutput(info, ui=ui.PreviewText(info))
