"""InstantID nodes: the adapter, IdentityNet, and the one-node recipe."""
import folder_paths
from comfy_api.latest import io

from ..mechanisms.loaders.ipadapter_file import load_ipadapter
from ..mechanisms.recipes.instantid import check_instantid, instantid_adapter, instantid_identitynet
from .base import InfuseNode
from .folders import find_model_file
from .presentation import (MASK_TOOLTIP, SDXL_MODEL_TOOLTIP, no_face_note, patched_model_tooltip, preview_images,
                           schedule_inputs, with_note)
from .types import FaceEmbedsType, IPAdapterType

COMBINE_FACES = ("average", "concat")


FACE_INPUTS = [
    FaceEmbedsType.Input("face_embeds", tooltip="The identity to copy: face embeds from Infuse Face Analysis with the "
                                                "antelopev2 models."),
    io.Combo.Input("combine", options=list(COMBINE_FACES), default="average",
                   tooltip="With several reference faces: average = one blended identity; concat = every face's "
                           "tokens side by side."),
    io.Float.Input("noise", default=0.0, min=0.0, max=1.0, step=0.01,
                   tooltip="The unconditional face input, 0 to 1: 0 = the zero embedding (reference code); above 0 = "
                           "seeded noise of that amount, which changes what the face is pushed away from."),
]
POSITIVE_TOOLTIP = "The positive prompt's conditioning (CLIP Text Encode); IdentityNet is attached to it."
NEGATIVE_TOOLTIP = "The negative prompt's conditioning; IdentityNet is attached to it with the unconditional face."
CONTROL_NET_TOOLTIP = ("IdentityNet, InstantID's ControlNet, from Load ControlNet Model (e.g. "
                       "controlnet/instantid/diffusion_pytorch_model.safetensors).")
KEYPOINTS_TOOLTIP = ("Where the face goes and how it is turned: a keypoint image (Infuse Face Analysis or Face "
                     "Keypoints) with the generated image's aspect ratio. Empty = the reference face's own keypoints "
                     "(same place and pose). The image used is previewed on the node.")
POSITIVE_OUT_TOOLTIP = "The positive conditioning with IdentityNet: connect to KSampler's positive."
NEGATIVE_OUT_TOOLTIP = "The negative conditioning with IdentityNet: connect to KSampler's negative."


class InfuseLoadInstantID(InfuseNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="InfuseLoadInstantID", display_name="Infuse Load InstantID", category="infuse/load",
            description="Loads InstantID's face adapter (ip-adapter.bin) from models/instantid. Connect it to "
                        "instantid on Infuse InstantID, InstantID Adapter or IdentityNet.",
            inputs=[io.Combo.Input("instantid_file", options=folder_paths.get_filename_list("instantid"),
                                   tooltip="InstantID's ip-adapter.bin (or a .safetensors conversion), from "
                                           "models/instantid. IdentityNet is a separate file, loaded with Load "
                                           "ControlNet Model.")],
            outputs=[IPAdapterType.Output("instantid", display_name="instantid",
                                          tooltip="The face adapter: connect to instantid on the "
                                                  "InstantID nodes.")],
        )

    @classmethod
    def execute(cls, instantid_file) -> io.NodeOutput:
        adapter = load_ipadapter(find_model_file("instantid", instantid_file, "instantid_file"), "instantid_file")
        check_instantid(adapter, "instantid_file")
        return io.NodeOutput(adapter)


class InfuseInstantIDAdapter(InfuseNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="InfuseInstantIDAdapter", display_name="Infuse InstantID Adapter", category="infuse/apply",
            description="InstantID's face adapter alone: the identity steers every cross-attention of an SDXL "
                        "model. Connect Infuse Load InstantID and Face Analysis's face_embeds; pair it with Infuse "
                        "IdentityNet, or use Infuse InstantID for both.",
            inputs=[io.Model.Input("model", tooltip=SDXL_MODEL_TOOLTIP),
                    IPAdapterType.Input("instantid", tooltip="The face adapter from Infuse Load InstantID."),
                    *FACE_INPUTS,
                    io.Float.Input("weight", default=0.8, min=0.0, max=3.0, step=0.01,
                                   tooltip="How strongly the identity steers the image, 0 to 3 (0 = off). Higher = "
                                           "closer likeness but stiffer faces; lower = more freedom for the prompt."),
                    *schedule_inputs("the face adapter"),
                    io.Mask.Input("attn_mask", optional=True, tooltip=MASK_TOOLTIP.format(subject="the face"))],
            outputs=[io.Model.Output("model_out", display_name="model", tooltip=patched_model_tooltip("the face adapter"))],
        )

    @classmethod
    def execute(cls, model, instantid, face_embeds, combine, noise, weight, start_percent, end_percent,
                attn_mask=None) -> io.NodeOutput:
        patched = instantid_adapter(model, instantid, face_embeds, combine, noise, weight, start_percent, end_percent,
                                    attn_mask)
        return io.NodeOutput(patched, ui=with_note(None, no_face_note(face_embeds, "the face adapter")))


class InfuseIdentityNet(InfuseNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="InfuseIdentityNet", display_name="Infuse IdentityNet", category="infuse/apply",
            description="InstantID's IdentityNet: a ControlNet on the face keypoints that sees the face identity "
                        "instead of the prompt. Connect the prompts' conditioning, IdentityNet, Infuse Load InstantID "
                        "and face embeds, then feed the outputs to KSampler.",
            inputs=[io.Conditioning.Input("positive", tooltip=POSITIVE_TOOLTIP),
                    io.Conditioning.Input("negative", tooltip=NEGATIVE_TOOLTIP),
                    io.ControlNet.Input("control_net", tooltip=CONTROL_NET_TOOLTIP),
                    IPAdapterType.Input("instantid", tooltip="The face adapter from Infuse Load InstantID; it turns "
                                                             "the face embedding into what IdentityNet sees."),
                    *FACE_INPUTS,
                    io.Image.Input("keypoints", optional=True, tooltip=KEYPOINTS_TOOLTIP),
                    io.Float.Input("strength", default=0.8, min=0.0, max=3.0, step=0.01,
                                   tooltip="How strongly IdentityNet holds the face's place, pose and features, 0 to 3 "
                                           "(0 = off). Higher = stricter; lower = looser."),
                    *schedule_inputs("IdentityNet"),
                    io.Mask.Input("attn_mask", optional=True, tooltip=MASK_TOOLTIP.format(subject="IdentityNet"))],
            outputs=[io.Conditioning.Output("positive_out", display_name="positive", tooltip=POSITIVE_OUT_TOOLTIP),
                     io.Conditioning.Output("negative_out", display_name="negative", tooltip=NEGATIVE_OUT_TOOLTIP)],
        )

    @classmethod
    def execute(cls, positive, negative, control_net, instantid, face_embeds, combine, noise, strength, start_percent,
                end_percent, keypoints=None, attn_mask=None) -> io.NodeOutput:
        pos, neg, condition = instantid_identitynet(positive, negative, control_net, instantid, face_embeds, combine,
                                                    noise, strength, start_percent, end_percent, keypoints, attn_mask)
        shown = preview_images(cls, condition) if condition is not None else None
        return io.NodeOutput(pos, neg, ui=with_note(shown, no_face_note(face_embeds, "IdentityNet")))


class InfuseInstantID(InfuseNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="InfuseInstantID", display_name="Infuse InstantID", category="infuse/apply",
            description="InstantID in one node: the face adapter on the model and IdentityNet on the conditioning, "
                        "each with its own weight and range. Connect an SDXL model, the prompts, Infuse Load "
                        "InstantID, IdentityNet and Face Analysis's face_embeds; feed the outputs to KSampler.",
            inputs=[io.Model.Input("model", tooltip=SDXL_MODEL_TOOLTIP),
                    io.Conditioning.Input("positive", tooltip=POSITIVE_TOOLTIP),
                    io.Conditioning.Input("negative", tooltip=NEGATIVE_TOOLTIP),
                    IPAdapterType.Input("instantid", tooltip="The face adapter from Infuse Load InstantID."),
                    io.ControlNet.Input("control_net", tooltip=CONTROL_NET_TOOLTIP),
                    *FACE_INPUTS,
                    io.Image.Input("keypoints", optional=True, tooltip=KEYPOINTS_TOOLTIP),
                    io.Float.Input("adapter_weight", default=0.8, min=0.0, max=3.0, step=0.01,
                                   tooltip="How strongly the face adapter steers the identity, 0 to 3 (0 = off). "
                                           "Higher = closer likeness but stiffer faces."),
                    io.Float.Input("identitynet_strength", default=0.8, min=0.0, max=3.0, step=0.01,
                                   tooltip="How strongly IdentityNet holds the face's place, pose and features, 0 to 3 "
                                           "(0 = off). Higher = stricter; lower = looser."),
                    *schedule_inputs("the face adapter", "adapter_"), *schedule_inputs("IdentityNet", "identitynet_"),
                    io.Mask.Input("attn_mask", optional=True,
                                  tooltip=MASK_TOOLTIP.format(subject="the face (adapter and IdentityNet)"))],
            outputs=[io.Model.Output("model_out", display_name="model", tooltip=patched_model_tooltip("the face adapter")),
                     io.Conditioning.Output("positive_out", display_name="positive", tooltip=POSITIVE_OUT_TOOLTIP),
                     io.Conditioning.Output("negative_out", display_name="negative", tooltip=NEGATIVE_OUT_TOOLTIP)],
        )

    @classmethod
    def execute(cls, model, positive, negative, instantid, control_net, face_embeds, combine, noise, adapter_weight,
                identitynet_strength, adapter_start_percent, adapter_end_percent, identitynet_start_percent,
                identitynet_end_percent, keypoints=None, attn_mask=None) -> io.NodeOutput:
        patched = instantid_adapter(model, instantid, face_embeds, combine, noise, adapter_weight,
                                    adapter_start_percent, adapter_end_percent, attn_mask, prefix="adapter_")
        pos, neg, condition = instantid_identitynet(positive, negative, control_net, instantid, face_embeds, combine,
                                                    noise, identitynet_strength, identitynet_start_percent,
                                                    identitynet_end_percent, keypoints, attn_mask, prefix="identitynet_")
        shown = preview_images(cls, condition) if condition is not None else None
        return io.NodeOutput(patched, pos, neg, ui=with_note(shown, no_face_note(face_embeds, "InstantID")))
