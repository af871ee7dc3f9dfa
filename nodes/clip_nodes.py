"""CLIP image encoder nodes: load a CLIP vision file (SigLIP pooling head kept) or an open-clip tower, encode images
to IMAGE_EMBEDS."""
import folder_paths
from comfy_api.latest import io

from ..extractors.clip_vision import CROP_MODES, describe, encode, load_comfy_clip_vision, load_open_clip, one_encoder
from .base import InfuseNode
from .folders import find_model_file
from .types import ImageEmbedsType, OpenClipType

CROP_TOOLTIP = ("How a non-square image becomes CLIP's square input (224 px for most encoders): crop = centre "
                "square, CLIP's own preprocessing (the edges are cut off); pad = the whole image on black bars; "
                "squash = the whole image stretched square (proportions change; SigLIP's own preprocessing).")
CLIP_VISION_TOOLTIP = ("A CLIP vision model (Load CLIP Vision) that encodes the images. Use the encoder the adapter "
                       "was trained with: ViT-H for most adapters, ViT-bigG for ip-adapter_sdxl and SD1.5 vit-G, "
                       "SigLIP so400m-384 from Infuse Load CLIP Vision (which keeps its pooling head) for the FLUX "
                       "IP-Adapter. Connect this or open_clip, not both.")
OPEN_CLIP_TOOLTIP = "Or an image tower from Infuse Load open-clip Vision, instead of clip_vision."


class InfuseCLIPVisionLoader(InfuseNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="InfuseCLIPVisionLoader", display_name="Infuse Load CLIP Vision", category="infuse/load",
            description="Loads a CLIP vision file with ComfyUI's own loader (the same model as Load CLIP Vision, "
                        "usable by every node) and keeps SigLIP's attention-pooling head, which that loader drops: the "
                        "InstantX FLUX IP-Adapter needs SigLIP's pooled output.",
            inputs=[io.Combo.Input("clip_name", options=folder_paths.get_filename_list("clip_vision"),
                                   tooltip="The CLIP vision file, from models/clip_vision: CLIP ViT-H / ViT-bigG, or "
                                           "SigLIP so400m-patch14-384 (Comfy-Org's sigclip_vision_patch14_384 or "
                                           "google's model.safetensors) for the FLUX IP-Adapter.")],
            outputs=[io.ClipVision.Output("clip_vision", display_name="clip_vision",
                                          tooltip="The CLIP vision model: connect it to clip_vision on Infuse nodes or "
                                                  "on any core node that takes CLIP_VISION."),
                     io.String.Output("info", display_name="info",
                                      tooltip="What the file holds, e.g. 'SigLIP-so400m-14-384 with pooling head "
                                              "(1152-d pooled output)'; connect it to a text preview to read it.")],
        )

    @classmethod
    def execute(cls, clip_name) -> io.NodeOutput:
        clip_vision = load_comfy_clip_vision(find_model_file("clip_vision", clip_name, "clip_name"), "clip_name")
        return io.NodeOutput(clip_vision, describe(clip_vision))


class InfuseLoadOpenClip(InfuseNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="InfuseLoadOpenClip", display_name="Infuse Load open-clip Vision", category="infuse/load",
            description="Builds an open-clip image tower (no download) and loads its weights from models/clip_vision. "
                        "Connect it to open_clip on Infuse Encode Image or Infuse IP-Adapter.",
            inputs=[
                io.String.Input("architecture", default="ViT-H-14",
                                tooltip="The open-clip model the weights belong to: ViT-H-14 (most IP-Adapters), "
                                        "ViT-bigG-14 (ip-adapter_sdxl), ViT-L-14, EVA02-L-14-336. A name that does "
                                        "not match the file stops the node with an error."),
                io.Combo.Input("clip_name", options=folder_paths.get_filename_list("clip_vision"),
                               tooltip="The open-clip weights file, from models/clip_vision."),
            ],
            outputs=[OpenClipType.Output("open_clip", display_name="open_clip",
                                         tooltip="The image encoder: connect it to open_clip on Infuse "
                                                 "Encode Image or Infuse IP-Adapter.")],
        )

    @classmethod
    def execute(cls, architecture, clip_name) -> io.NodeOutput:
        path = find_model_file("clip_vision", clip_name, "clip_name")
        return io.NodeOutput(load_open_clip(architecture.strip(), path))


class InfuseEncodeImage(InfuseNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="InfuseEncodeImage", display_name="Infuse Encode Image (CLIP)", category="infuse/extract",
            description="Encodes each image with a CLIP vision model (pooled and penultimate hidden states). Connect "
                        "the embeds to image_embeds on Infuse IP-Adapter, or keep them with Infuse Save Embeds.",
            inputs=[
                io.Image.Input("image", tooltip="The image(s) to encode, any size; a batch gives one embedding per "
                                                "image, in order."),
                io.ClipVision.Input("clip_vision", optional=True, tooltip=CLIP_VISION_TOOLTIP),
                OpenClipType.Input("open_clip", optional=True, tooltip=OPEN_CLIP_TOOLTIP),
                io.Combo.Input("crop", options=list(CROP_MODES), default="crop", tooltip=CROP_TOOLTIP),
            ],
            outputs=[ImageEmbedsType.Output("image_embeds", display_name="image_embeds",
                                            tooltip="The CLIP embeds of every image, in order: connect "
                                                    "to image_embeds on Infuse IP-Adapter.")],
        )

    @classmethod
    def execute(cls, image, crop, clip_vision=None, open_clip=None) -> io.NodeOutput:
        return io.NodeOutput(encode(one_encoder(clip_vision, open_clip), image, crop))
