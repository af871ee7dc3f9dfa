"""IP-Adapter nodes: load an adapter file, apply it to a model."""
import folder_paths
from comfy_api.latest import io

from ..core.errors import InfuseError
from ..extractors.clip_vision import CROP_MODES
from ..mechanisms.decoupled_attention.block_weights import WEIGHT_TYPES
from ..mechanisms.decoupled_attention.ipadapter import COMBINE
from ..mechanisms.loaders.ipadapter_file import load_ipadapter
from ..mechanisms.patching.gate import MASK_MODES
from ..mechanisms.recipes.ipadapter import ipadapter_on_model
from .base import InfuseNode
from .clip_nodes import CLIP_VISION_TOOLTIP, CROP_TOOLTIP, OPEN_CLIP_TOOLTIP
from .folders import find_model_file
from .presentation import (APPLY_MODEL_TOOLTIP, MASK_TOOLTIP, no_face_note, patched_model_tooltip, schedule_inputs,
                           weight_input, with_note)
from .types import FaceEmbedsType, ImageEmbedsType, IPAdapterType, OpenClipType

APPLY = "Infuse IP-Adapter"
APPLY_SIMPLE = "Infuse IP-Adapter (simple)"


class InfuseIPAdapterLoader(InfuseNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="InfuseIPAdapterLoader", display_name="Infuse Load IP-Adapter", category="infuse/load",
            description="Loads an IP-Adapter file (.safetensors, or .bin read without running code); the variant "
                        "(base, plus, full-face, FaceID, ...; XLabs or InstantX for Flux) and base model are read "
                        "from the weights. Connect it to ipadapter on Infuse IP-Adapter.",
            inputs=[io.Combo.Input("ipadapter_file", options=folder_paths.get_filename_list("ipadapter"),
                                   tooltip="An IP-Adapter file from models/ipadapter: SD1.5, SDXL, or Flux (XLabs "
                                           "flux-ip-adapter v1 / v2, InstantX FLUX.1-dev-IP-Adapter). What it is is "
                                           "read from the weights, so the file name does not matter.")],
            outputs=[IPAdapterType.Output("ipadapter", display_name="ipadapter",
                                          tooltip="The loaded adapter: connect to ipadapter on Infuse "
                                                  "IP-Adapter."),
                     io.String.Output("info", display_name="info",
                                      tooltip="What the file was recognised as (base model, variant, the "
                                              "encoder it needs, token count); show it with a text preview node.")],
        )

    @classmethod
    def execute(cls, ipadapter_file) -> io.NodeOutput:
        adapter = load_ipadapter(find_model_file("ipadapter", ipadapter_file, "ipadapter_file"))
        return io.NodeOutput(adapter, adapter.describe())


class InfuseIPAdapter(InfuseNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="InfuseIPAdapter", display_name="Infuse IP-Adapter", category="infuse/apply",
            description="Adds an IP-Adapter to the model: the reference image steers every cross-attention next to "
                        "the prompt (on Flux: the double / single blocks). Connect a model, Infuse Load IP-Adapter "
                        "and a reference image with a CLIP vision model (or embeds); it stacks with every other "
                        "Infuse node on the same model.",
            inputs=[
                io.Model.Input("model", tooltip=APPLY_MODEL_TOOLTIP),
                IPAdapterType.Input("ipadapter", tooltip="The adapter from Infuse Load IP-Adapter; made for the "
                                                         "model's family (SD1.5, SDXL or Flux)."),
                io.Image.Input("image", optional=True,
                               tooltip="The reference image(s) whose subject or style the result follows. A batch of "
                                       "several is combined as set in combine. For FaceID-Plus, connect Infuse Face "
                                       "Analysis's face_crops."),
                io.ClipVision.Input("clip_vision", optional=True, tooltip=CLIP_VISION_TOOLTIP),
                OpenClipType.Input("open_clip", optional=True, tooltip=OPEN_CLIP_TOOLTIP),
                ImageEmbedsType.Input("image_embeds", optional=True,
                                      tooltip="Already-encoded images (Infuse Encode Image or Load Image Embeds), used "
                                              "instead of image + encoder; saves encoding the same references again."),
                FaceEmbedsType.Input("face_embeds", optional=True,
                                     tooltip="The face identity from Infuse Face Analysis (buffalo_l); needed by "
                                             "FaceID adapters (SD1.5 / SDXL), unused by the others."),
                io.Image.Input("negative_image", optional=True,
                               tooltip="Optional image the result is steered away from: it replaces the blank "
                                       "unconditional image of the reference code (same encoder and crop)."),
                weight_input("weight", "How strongly the reference steers the image, -1 to 5 (1 = as trained, 0 = "
                                       "off). Lower it (0.5 to 0.8) to give the prompt more say, raise it to follow "
                                       "the reference more closely; negative pushes away from it."),
                io.Combo.Input("weight_type", options=list(WEIGHT_TYPES), default="linear",
                               tooltip="How the weight is spread over the UNet's blocks: linear = the same "
                                       "everywhere; ease / weak / strong types ramp it by depth; style transfer and "
                                       "composition act only on the blocks carrying style or layout (InstantStyle). "
                                       "On Flux: linear and the ease / reverse ramps, over double then single "
                                       "blocks."),
                weight_input("composition_weight", "Weight of the layout blocks, -1 to 5, for the composition and "
                                                   "style and composition types (ignored by the others, and on "
                                                   "Flux). Raise it to copy the reference's layout more."),
                *schedule_inputs("the adapter"),
                io.Combo.Input("combine", options=list(COMBINE), default="concat",
                               tooltip="With several reference images: concat = all their tokens side by side "
                                       "(each image keeps its own say, as in the reference code); average = one "
                                       "blended embedding."),
                io.Combo.Input("crop", options=list(CROP_MODES), default="crop", tooltip=CROP_TOOLTIP),
                io.Mask.Input("attn_mask", optional=True, tooltip=MASK_TOOLTIP.format(subject="the reference")),
                io.String.Input("block_weights", default="", multiline=True,
                                tooltip="Optional per-block multipliers on top of the weight, e.g. 'input=0, "
                                        "output:1=1.2' (0 turns a block off); empty = none. Infuse Attention Sites "
                                        "lists the block names. On Flux: 'double=1, single=0.5' or 'double:3=0' "
                                        "(block number)."),
                io.Float.Input("faceid_lora_strength", default=1.0, min=0.0, max=2.0, step=0.01,
                               tooltip="FaceID files carry a LoRA for the model; its strength, 0 to 2 (1 = as the "
                                       "reference code). Ignored by other adapters."),
                io.Boolean.Input("faceid_v2", default=True,
                                 tooltip="FaceID-Plus v2 formula (the face embedding added back as a shortcut). The "
                                         "weights cannot tell v1 from v2: turn off for FaceID-Plus v1 files. Only "
                                         "FaceID-Plus uses it."),
                io.Float.Input("faceid_v2_weight", default=1.0, min=0.0, max=3.0, step=0.01,
                               tooltip="Strength of the v2 shortcut, 0 to 3 (1 = reference): higher keeps the "
                                       "identity closer. FaceID-Plus v2 only."),
                io.Combo.Input("mask_mode", options=list(MASK_MODES), default="reference", optional=True,
                               tooltip="How attn_mask reaches each attention layer: reference = as the published "
                                       "pipelines (black/white at 50 %, smooth resize; the same image as diffusers); "
                                       "soft = grey levels kept as partial weights."),
            ],
            outputs=[io.Model.Output("model_out", display_name="model", tooltip=patched_model_tooltip("the IP-Adapter"))],
        )

    @classmethod
    def execute(cls, model, ipadapter, weight, weight_type, composition_weight, start_percent, end_percent, combine,
                crop, block_weights, faceid_lora_strength, faceid_v2, faceid_v2_weight, image=None,
                clip_vision=None, open_clip=None, image_embeds=None, face_embeds=None, negative_image=None,
                attn_mask=None, mask_mode="reference") -> io.NodeOutput:
        patched = ipadapter_on_model(
            model, ipadapter, weight, start_percent, end_percent, image=image, clip_vision=clip_vision,
            open_clip=open_clip, image_embeds=image_embeds, face_embeds=face_embeds, negative_image=negative_image,
            attn_mask=attn_mask, weight_type=weight_type, composition_weight=composition_weight, combine=combine,
            crop=crop, block_weights=block_weights, faceid_lora_strength=faceid_lora_strength, faceid_v2=faceid_v2,
            faceid_v2_weight=faceid_v2_weight, mask_mode=mask_mode)
        note = no_face_note(face_embeds, f"the IP-Adapter '{ipadapter.name}'") \
            if ipadapter.uses_face and face_embeds is not None else None
        return io.NodeOutput(patched, ui=with_note(None, note))


class InfuseIPAdapterSimple(InfuseNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="InfuseIPAdapterSimple", display_name=APPLY_SIMPLE, category="infuse/apply",
            description="The common case of Infuse IP-Adapter: a reference image (or its embeds) steers the model "
                        "with one weight. For FaceID adapters, weight types, several images, a negative image or "
                        "per-block weights use Infuse IP-Adapter.",
            inputs=[
                io.Model.Input("model", tooltip=APPLY_MODEL_TOOLTIP),
                IPAdapterType.Input("ipadapter", tooltip="The adapter from Infuse Load IP-Adapter; made for the "
                                                         "model's family (SD1.5, SDXL or Flux). FaceID files need "
                                                         "Infuse IP-Adapter."),
                io.Image.Input("image", optional=True,
                               tooltip="The reference image whose subject or style the result follows (needs "
                                       "clip_vision); or connect image_embeds instead."),
                io.ClipVision.Input("clip_vision", optional=True, tooltip=CLIP_VISION_TOOLTIP),
                ImageEmbedsType.Input("image_embeds", optional=True,
                                      tooltip="Already-encoded images (Infuse Encode Image): changing the weight then "
                                              "does not encode the reference again."),
                weight_input("weight", "How strongly the reference steers the image, -1 to 5 (1 = as trained, 0 = "
                                       "off). Lower it (0.5 to 0.8) to give the prompt more say."),
                *schedule_inputs("the adapter"),
                io.Mask.Input("attn_mask", optional=True, tooltip=MASK_TOOLTIP.format(subject="the reference")),
            ],
            outputs=[io.Model.Output("model_out", display_name="model", tooltip=patched_model_tooltip("the IP-Adapter"))],
        )

    @classmethod
    def execute(cls, model, ipadapter, weight, start_percent, end_percent, image=None, clip_vision=None,
                image_embeds=None, attn_mask=None) -> io.NodeOutput:
        if ipadapter.uses_face:
            raise InfuseError(f"'{ipadapter.name}' is a FaceID adapter ({ipadapter.describe()}): it "
                              "needs face embeds, which this node has no input for.",
                              f"use {APPLY} (same inputs plus face_embeds) for FaceID files.",
                              input_name="ipadapter")
        patched = ipadapter_on_model(model, ipadapter, weight, start_percent, end_percent, image=image,
                                     clip_vision=clip_vision, image_embeds=image_embeds, attn_mask=attn_mask)
        return io.NodeOutput(patched)
