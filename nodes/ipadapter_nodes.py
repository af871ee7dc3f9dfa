"""IP-Adapter nodes: load an adapter file, apply it to a model."""
import folder_paths
from comfy_api.latest import io

from ..extractors.clip_vision import CROP_MODES, encode
from ..mechanisms import schedule
from ..mechanisms.errors import InfuseError
from ..mechanisms.ipadapter import COMBINE, apply_faceid_lora, apply_ipadapter, check_family, image_tokens
from ..mechanisms.ipadapter_file import load_ipadapter
from ..mechanisms.sites import model_family, model_sites
from .clip_nodes import CROP_TOOLTIP, resolve_encoder
from .folders import find_model_file
from .types import FaceEmbedsType, ImageEmbedsType, IPAdapterType, OpenClipType

APPLY = "Infuse IP-Adapter"


class InfuseIPAdapterLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="InfuseIPAdapterLoader", display_name="Infuse Load IP-Adapter", category="infuse/load",
            description="Loads an IP-Adapter file (.safetensors, or .bin read without running code). The variant "
                        "(base, plus, full-face, FaceID, ...) and base model are read from the weights.",
            inputs=[io.Combo.Input("ipadapter_file", options=folder_paths.get_filename_list("ipadapter"),
                                   tooltip="A file in models/ipadapter.")],
            outputs=[IPAdapterType.Output("ipadapter", tooltip="The adapter."),
                     io.String.Output("info", tooltip="What the file was recognised as.")],
        )

    @classmethod
    def execute(cls, ipadapter_file) -> io.NodeOutput:
        node = "Infuse Load IP-Adapter"
        adapter = load_ipadapter(find_model_file("ipadapter", ipadapter_file, node, "ipadapter_file"), node)
        return io.NodeOutput(adapter, adapter.describe())


def _embeds(adapter, image, embeds, encoder, crop, input_name):
    if embeds is not None or not adapter.uses_clip or image is None:
        return embeds
    return encode(encoder(), image, APPLY, crop, input_name)


class InfuseIPAdapter(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="InfuseIPAdapter", display_name="Infuse IP-Adapter", category="infuse/apply",
            description="Decoupled cross-attention: Z = Attn(Q, K_t, V_t) + w * Attn(Q, K_i, V_i) at every "
                        "cross-attention of the UNet. Stacks with any other Infuse mechanism on the same model.",
            inputs=[
                io.Model.Input("model", tooltip="SD1.5 or SDXL model to patch (it is cloned, not changed)."),
                IPAdapterType.Input("ipadapter", tooltip="From Infuse Load IP-Adapter."),
                io.Image.Input("image", optional=True,
                               tooltip="Reference image(s). Several images are combined as set in 'combine'."),
                io.ClipVision.Input("clip_vision", optional=True, tooltip="CLIP vision model to encode the images."),
                OpenClipType.Input("open_clip", optional=True, tooltip="Or an open-clip image tower."),
                ImageEmbedsType.Input("image_embeds", optional=True,
                                      tooltip="Precomputed embeds instead of image + encoder."),
                FaceEmbedsType.Input("face_embeds", optional=True, tooltip="Face embeddings, for FaceID adapters."),
                io.Image.Input("negative_image", optional=True,
                               tooltip="Replaces the unconditional image tokens (default: the reference code's)."),
                io.Float.Input("weight", default=1.0, min=-1.0, max=5.0, step=0.01, tooltip="w in the formula."),
                io.Combo.Input("weight_type", options=list(schedule.WEIGHT_TYPES), default="linear",
                               tooltip="How the weight spreads over the UNet: ramps, or only style / composition "
                                       "blocks (InstantStyle)."),
                io.Float.Input("composition_weight", default=1.0, min=-1.0, max=5.0, step=0.01,
                               tooltip="Weight of the composition blocks for the composition weight types."),
                io.Float.Input("start_percent", default=0.0, min=0.0, max=1.0, step=0.001,
                               tooltip="Where in the schedule the adapter starts acting."),
                io.Float.Input("end_percent", default=1.0, min=0.0, max=1.0, step=0.001,
                               tooltip="Where in the schedule the adapter stops acting."),
                io.Combo.Input("combine", options=list(COMBINE), default="concat",
                               tooltip="Several reference images: concatenate their tokens (reference code) or "
                                       "average their embeds."),
                io.Combo.Input("crop", options=list(CROP_MODES), default="crop", tooltip=CROP_TOOLTIP),
                io.Mask.Input("attn_mask", optional=True,
                              tooltip="Where the adapter acts (white). Same aspect ratio as the generated image."),
                io.String.Input("block_weights", default="", multiline=True,
                                tooltip="Optional per-block multipliers, e.g. 'input=0, output:1=1.2' "
                                        "(see Infuse Attention Sites)."),
                io.Float.Input("faceid_lora_strength", default=1.0, min=0.0, max=2.0, step=0.01,
                               tooltip="FaceID files carry a LoRA; its strength (the reference uses 1)."),
                io.Boolean.Input("faceid_v2", default=True,
                                 tooltip="FaceID-Plus v2 (face tokens added back, 'shortcut'). The weights cannot "
                                         "tell v1 from v2: turn off for FaceID-Plus v1 files."),
                io.Float.Input("faceid_v2_weight", default=1.0, min=0.0, max=3.0, step=0.01,
                               tooltip="Scale of the v2 shortcut."),
            ],
            outputs=[io.Model.Output(tooltip="The patched model.")],
        )

    @classmethod
    def execute(cls, model, ipadapter, weight, weight_type, composition_weight, start_percent, end_percent, combine,
                crop, block_weights, faceid_lora_strength, faceid_v2, faceid_v2_weight, image=None,
                clip_vision=None, open_clip=None, image_embeds=None, face_embeds=None, negative_image=None,
                attn_mask=None) -> io.NodeOutput:
        family = model_family(model, APPLY)
        check_family(model, ipadapter, APPLY)
        if ipadapter.uses_clip and image is None and image_embeds is None:
            raise InfuseError(APPLY, f"'{ipadapter.name}' ({ipadapter.describe()}) needs a reference image.",
                              "connect an image and a CLIP vision model, or image_embeds.", input_name="image")
        encoder = lambda: resolve_encoder(clip_vision, open_clip, APPLY)
        embeds = _embeds(ipadapter, image, image_embeds, encoder, crop, "image")
        negative = _embeds(ipadapter, negative_image, None, encoder, crop, "negative_image")
        cond, uncond = image_tokens(ipadapter, APPLY, embeds=embeds, faces=face_embeds, negative=negative,
                                    combine=combine, faceid_v2=faceid_v2, faceid_v2_weight=faceid_v2_weight)
        sites = model_sites(model, APPLY)
        site_weights = schedule.site_weights(sites, family, weight_type, weight, composition_weight, block_weights,
                                             APPLY)

        patched = model.clone()
        apply_ipadapter(patched, ipadapter, cond, uncond, APPLY, weight=1.0, site_weights=site_weights,
                        start_percent=start_percent, end_percent=end_percent, mask=attn_mask)
        apply_faceid_lora(patched, ipadapter, faceid_lora_strength, APPLY)
        return io.NodeOutput(patched)
