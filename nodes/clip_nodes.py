"""CLIP image encoder nodes: load an open-clip tower, encode images to IMAGE_EMBEDS."""
import folder_paths
from comfy_api.latest import io

from ..extractors.clip_vision import CROP_MODES, ComfyClipVision, encode, load_open_clip
from ..mechanisms.errors import InfuseError
from .folders import find_model_file
from .types import ImageEmbedsType, OpenClipType

CROP_TOOLTIP = ("How a non-square image becomes CLIP's square input: crop = shortest side to the model's size, "
                "centre crop (CLIP's own preprocessing); pad = the whole image on black; squash = stretched.")


def resolve_encoder(clip_vision, open_clip, node: str):
    """The one encoder connected to a node (ComfyUI CLIP_VISION or an open-clip tower)."""
    if clip_vision is not None and open_clip is not None:
        raise InfuseError(node, "both a CLIP vision model and an open-clip model are connected.",
                          "connect only one of them.", input_name="clip_vision")
    if clip_vision is not None:
        return ComfyClipVision(clip_vision)
    if open_clip is not None:
        return open_clip
    raise InfuseError(node, "no CLIP image encoder is connected.",
                      "connect Load CLIP Vision (or Infuse Load open-clip Vision) to clip_vision.",
                      input_name="clip_vision")


class InfuseLoadOpenClip(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="InfuseLoadOpenClip", display_name="Infuse Load open-clip Vision", category="infuse/load",
            description="Builds an open-clip image tower (no download) and loads its weights from models/clip_vision.",
            inputs=[
                io.String.Input("architecture", default="ViT-H-14",
                                tooltip="open-clip architecture name: ViT-H-14, ViT-bigG-14, ViT-L-14, EVA02-L-14-336."),
                io.Combo.Input("clip_name", options=folder_paths.get_filename_list("clip_vision"),
                               tooltip="The open-clip weights file (models/clip_vision)."),
            ],
            outputs=[OpenClipType.Output("open_clip", tooltip="The image tower.")],
        )

    @classmethod
    def execute(cls, architecture, clip_name) -> io.NodeOutput:
        node = "Infuse Load open-clip Vision"
        path = find_model_file("clip_vision", clip_name, node, "clip_name")
        return io.NodeOutput(load_open_clip(architecture.strip(), path, node))


class InfuseEncodeImage(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="InfuseEncodeImage", display_name="Infuse Encode Image (CLIP)", category="infuse/extract",
            description="CLIP image embeds of each image (pooled and penultimate hidden states), for IP-Adapter.",
            inputs=[
                io.Image.Input("image", tooltip="One or more images; each is encoded."),
                io.ClipVision.Input("clip_vision", optional=True, tooltip="A CLIP vision model (Load CLIP Vision)."),
                OpenClipType.Input("open_clip", optional=True, tooltip="Or an open-clip tower."),
                io.Combo.Input("crop", options=list(CROP_MODES), default="crop", tooltip=CROP_TOOLTIP),
            ],
            outputs=[ImageEmbedsType.Output("image_embeds", tooltip="Embeds of every image, in order.")],
        )

    @classmethod
    def execute(cls, image, crop, clip_vision=None, open_clip=None) -> io.NodeOutput:
        node = "Infuse Encode Image (CLIP)"
        return io.NodeOutput(encode(resolve_encoder(clip_vision, open_clip, node), image, node, crop))
