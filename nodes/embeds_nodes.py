"""Save and load IMAGE_EMBEDS / FACE_EMBEDS as .safetensors (tensors + metadata naming the encoder)."""
import os

import folder_paths
from comfy_api.latest import io, ui
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..core.errors import InfuseError
from ..core.records import FaceEmbeds, ImageEmbeds, from_tensors, to_tensors
from ..extractors.clip_vision import one_encoder
from .base import InfuseNode
from .types import FaceEmbedsType, ImageEmbedsType, OpenClipType

EMBEDS_FILE_TOOLTIP = ("A .safetensors file written by Infuse Save Embeds, in ComfyUI's input folder (subfolders "
                       "included). Refresh the page after copying a new file there.")


def _embeds_files() -> list[str]:
    root = folder_paths.get_input_directory()
    found = []
    for folder, _, files in os.walk(root):
        found += [os.path.relpath(os.path.join(folder, f), root) for f in files if f.endswith(".safetensors")]
    return sorted(found)


class InfuseSaveEmbeds(InfuseNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="InfuseSaveEmbeds", display_name="Infuse Save Embeds", category="infuse/extract",
            description="Saves image or face embeds to the output folder as .safetensors, so the images need not be "
                        "encoded again. Connect one kind of embeds; move the file to the input folder to load it "
                        "with Infuse Load Image/Face Embeds.",
            inputs=[ImageEmbedsType.Input("image_embeds", optional=True,
                                          tooltip="Image embeds to save (from Infuse Encode Image). Connect this or "
                                                  "face_embeds, not both."),
                    FaceEmbedsType.Input("face_embeds", optional=True,
                                         tooltip="Or face embeds to save (from Infuse Face Analysis)."),
                    io.String.Input("filename_prefix", default="infuse/embeds",
                                    tooltip="File name under ComfyUI's output folder; a counter and .safetensors are "
                                            "added (infuse/embeds -> output/infuse/embeds_00001.safetensors). "
                                            "Slashes make subfolders.")],
            outputs=[io.String.Output("path", display_name="path",
                                      tooltip="The saved file's path relative to the output folder (also "
                                              "shown on the node).")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, filename_prefix, image_embeds=None, face_embeds=None) -> io.NodeOutput:
        record = image_embeds if image_embeds is not None else face_embeds
        if record is None or (image_embeds is not None and face_embeds is not None):
            raise InfuseError("image_embeds and face_embeds are both connected, or neither is.",
                              "connect exactly one of them; use two Save nodes to save both.",
                              input_name="image_embeds")
        out_dir = folder_paths.get_output_directory()
        folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(filename_prefix, out_dir)
        path = os.path.join(folder, f"{name}_{counter:05}.safetensors")
        tensors, meta = to_tensors(record)
        save_file(tensors, path, metadata=meta)
        rel = os.path.relpath(path, out_dir)
        return io.NodeOutput(rel, ui=ui.PreviewText(f"saved {rel}"))


def _load(cls, file: str):
    root = folder_paths.get_input_directory()
    path = os.path.abspath(os.path.join(root, file))
    if not path.startswith(os.path.abspath(root) + os.sep) or not os.path.isfile(path):
        raise InfuseError(f"'{file}' is not a file in the input folder ({root}).",
                          "put the saved embeds file in ComfyUI's input folder.", input_name="embeds_file")
    try:
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        record = from_tensors(cls, tensors, meta)
    except (ValueError, KeyError, OSError, RuntimeError, SafetensorError) as e:
        raise InfuseError(f"'{file}' is not a saved {cls.__name__} file ({e}).",
                          "choose a file written by Infuse Save Embeds.", input_name="embeds_file") from e
    if len(record) == 0:
        raise InfuseError(f"'{file}' holds no embeddings (an empty batch was saved).",
                          "save the embeds again from at least one image or face.", input_name="embeds_file")
    return record


class InfuseLoadImageEmbeds(InfuseNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="InfuseLoadImageEmbeds", display_name="Infuse Load Image Embeds", category="infuse/load",
            description="Loads image embeds saved by Infuse Save Embeds from the input folder. Connect them to "
                        "image_embeds on Infuse IP-Adapter instead of an image and a CLIP vision model.",
            inputs=[io.Combo.Input("embeds_file", options=_embeds_files(), tooltip=EMBEDS_FILE_TOOLTIP),
                    io.ClipVision.Input("clip_vision", optional=True,
                                        tooltip="Optional check: if connected, the file must have been made by this "
                                                "CLIP vision model, otherwise the node stops with an error."),
                    OpenClipType.Input("open_clip", optional=True,
                                       tooltip="Optional check against an open-clip tower instead.")],
            outputs=[ImageEmbedsType.Output("image_embeds", display_name="image_embeds",
                                            tooltip="The saved image embeds: connect to image_embeds "
                                                    "on Infuse IP-Adapter.")],
        )

    @classmethod
    def execute(cls, embeds_file, clip_vision=None, open_clip=None) -> io.NodeOutput:
        embeds = _load(ImageEmbeds, embeds_file)
        if clip_vision is not None or open_clip is not None:
            encoder = one_encoder(clip_vision, open_clip)
            if encoder.name != embeds.encoder:
                raise InfuseError(f"'{embeds_file}' was made by {embeds.encoder}, not by the connected "
                                  f"{encoder.name}.", "re-encode the images with the connected encoder, or "
                                                      "disconnect it.", input_name="embeds_file")
        return io.NodeOutput(embeds)


class InfuseLoadFaceEmbeds(InfuseNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="InfuseLoadFaceEmbeds", display_name="Infuse Load Face Embeds", category="infuse/load",
            description="Loads face embeds saved by Infuse Save Embeds from the input folder. Connect them where "
                        "Infuse Face Analysis's face_embeds would go (FaceID IP-Adapter, InstantID).",
            inputs=[io.Combo.Input("embeds_file", options=_embeds_files(), tooltip=EMBEDS_FILE_TOOLTIP)],
            outputs=[FaceEmbedsType.Output("face_embeds", display_name="face_embeds",
                                           tooltip="The saved face embeds: connect to face_embeds on "
                                                   "Infuse IP-Adapter (FaceID) or the InstantID nodes.")],
        )

    @classmethod
    def execute(cls, embeds_file) -> io.NodeOutput:
        return io.NodeOutput(_load(FaceEmbeds, embeds_file))
