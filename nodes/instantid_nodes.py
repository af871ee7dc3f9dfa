"""InstantID nodes: the adapter, IdentityNet, and the one-node recipe."""
import folder_paths
from comfy_api.latest import io

from ..extractors.keypoints import keypoints_images
from ..mechanisms.errors import InfuseError
from ..mechanisms.instantid import check_instantid, face_tokens, identitynet_conditioning
from ..mechanisms.ipadapter import apply_ipadapter
from ..mechanisms.ipadapter_file import load_ipadapter
from ..mechanisms.sites import model_family
from .folders import find_model_file
from .types import FaceEmbedsType, IPAdapterType

COMBINE_FACES = ("average", "concat")


def _require_sdxl(model, node):
    if model_family(model, node) != "sdxl":
        raise InfuseError(node, "InstantID needs an SDXL model; this one is SD1.5.",
                          "load an SDXL checkpoint for InstantID.", input_name="model")


def _keypoints(face_embeds, keypoints, node):
    if keypoints is not None:
        return keypoints
    if face_embeds.kps.abs().sum() == 0 or face_embeds.image_hw.min() <= 0:
        raise InfuseError(node, "the face embeds carry no keypoints (they were not made by Infuse Face Analysis).",
                          "connect a keypoints image (Infuse Face Analysis or Infuse Face Keypoints).",
                          input_name="keypoints")
    hw = tuple(int(v) for v in face_embeds.image_hw[0].tolist())
    return keypoints_images(face_embeds.kps[:1], hw, hw)


def _common_inputs(prefix=""):
    return [io.Float.Input(f"{prefix}start_percent", default=0.0, min=0.0, max=1.0, step=0.001,
                           tooltip="Where in the schedule it starts acting."),
            io.Float.Input(f"{prefix}end_percent", default=1.0, min=0.0, max=1.0, step=0.001,
                           tooltip="Where in the schedule it stops acting.")]


FACE_INPUTS = [
    FaceEmbedsType.Input("face_embeds", tooltip="From Infuse Face Analysis (antelopev2)."),
    io.Combo.Input("combine", options=list(COMBINE_FACES), default="average",
                   tooltip="Several reference faces: average their embeddings, or concatenate their tokens."),
    io.Float.Input("noise", default=0.0, min=0.0, max=1.0, step=0.01,
                   tooltip="Uncond face input: 0 = the zero embedding (reference); >0 = seeded noise of this amount."),
]


class InfuseLoadInstantID(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="InfuseLoadInstantID", display_name="Infuse Load InstantID", category="infuse/load",
            description="Loads InstantID's face adapter (ip-adapter.bin) from models/instantid.",
            inputs=[io.Combo.Input("instantid_file", options=folder_paths.get_filename_list("instantid"),
                                   tooltip="InstantID's ip-adapter.bin (or a .safetensors conversion).")],
            outputs=[IPAdapterType.Output("instantid", tooltip="The face adapter.")],
        )

    @classmethod
    def execute(cls, instantid_file) -> io.NodeOutput:
        node = "Infuse Load InstantID"
        adapter = load_ipadapter(find_model_file("instantid", instantid_file, node, "instantid_file"), node,
                                 "instantid_file")
        check_instantid(adapter, node, "instantid_file")
        return io.NodeOutput(adapter)


class InfuseInstantIDAdapter(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="InfuseInstantIDAdapter", display_name="Infuse InstantID Adapter", category="infuse/apply",
            description="InstantID's face adapter: 16 face tokens in decoupled cross-attention at every site.",
            inputs=[io.Model.Input("model", tooltip="An SDXL model (cloned, not changed)."),
                    IPAdapterType.Input("instantid", tooltip="From Infuse Load InstantID."), *FACE_INPUTS,
                    io.Float.Input("weight", default=0.8, min=0.0, max=3.0, step=0.01, tooltip="Adapter weight."),
                    *_common_inputs(),
                    io.Mask.Input("attn_mask", optional=True, tooltip="Where the face goes (white).")],
            outputs=[io.Model.Output(tooltip="The patched model.")],
        )

    @classmethod
    def execute(cls, model, instantid, face_embeds, combine, noise, weight, start_percent, end_percent,
                attn_mask=None) -> io.NodeOutput:
        node = "Infuse InstantID Adapter"
        _require_sdxl(model, node)
        cond, uncond = face_tokens(instantid, face_embeds, node, combine, noise)
        patched = model.clone()
        apply_ipadapter(patched, instantid, cond, uncond, node, weight=weight, start_percent=start_percent,
                        end_percent=end_percent, mask=attn_mask)
        return io.NodeOutput(patched)


class InfuseIdentityNet(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="InfuseIdentityNet", display_name="Infuse IdentityNet", category="infuse/apply",
            description="InstantID's IdentityNet: a ControlNet on the keypoint image whose context is the face "
                        "tokens, never the text.",
            inputs=[io.Conditioning.Input("positive", tooltip="Positive conditioning."),
                    io.Conditioning.Input("negative", tooltip="Negative conditioning."),
                    io.ControlNet.Input("control_net", tooltip="IdentityNet, from Load ControlNet Model."),
                    IPAdapterType.Input("instantid", tooltip="From Infuse Load InstantID (makes the face tokens)."),
                    *FACE_INPUTS,
                    io.Image.Input("keypoints", optional=True,
                                   tooltip="Condition image; default: the face's own keypoints."),
                    io.Float.Input("strength", default=0.8, min=0.0, max=3.0, step=0.01, tooltip="ControlNet strength."),
                    *_common_inputs(),
                    io.Mask.Input("attn_mask", optional=True, tooltip="Where IdentityNet acts (white).")],
            outputs=[io.Conditioning.Output("positive_out", display_name="positive", tooltip="With IdentityNet."),
                     io.Conditioning.Output("negative_out", display_name="negative",
                                            tooltip="With IdentityNet (uncond face tokens).")],
        )

    @classmethod
    def execute(cls, positive, negative, control_net, instantid, face_embeds, combine, noise, strength, start_percent,
                end_percent, keypoints=None, attn_mask=None) -> io.NodeOutput:
        node = "Infuse IdentityNet"
        cond, uncond = face_tokens(instantid, face_embeds, node, combine, noise)
        pos, neg = identitynet_conditioning(positive, negative, control_net, _keypoints(face_embeds, keypoints, node),
                                            cond, uncond, strength, start_percent, end_percent, node, attn_mask)
        return io.NodeOutput(pos, neg)


class InfuseInstantID(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="InfuseInstantID", display_name="Infuse InstantID", category="infuse/apply",
            description="InstantID in one node: the face adapter on the model and IdentityNet on the conditioning.",
            inputs=[io.Model.Input("model", tooltip="An SDXL model."),
                    io.Conditioning.Input("positive", tooltip="Positive conditioning."),
                    io.Conditioning.Input("negative", tooltip="Negative conditioning."),
                    IPAdapterType.Input("instantid", tooltip="From Infuse Load InstantID."),
                    io.ControlNet.Input("control_net", tooltip="IdentityNet, from Load ControlNet Model."),
                    *FACE_INPUTS,
                    io.Image.Input("keypoints", optional=True,
                                   tooltip="Condition image; default: the face's own keypoints."),
                    io.Float.Input("adapter_weight", default=0.8, min=0.0, max=3.0, step=0.01,
                                   tooltip="Face adapter weight."),
                    io.Float.Input("identitynet_strength", default=0.8, min=0.0, max=3.0, step=0.01,
                                   tooltip="IdentityNet strength."),
                    *_common_inputs("adapter_"), *_common_inputs("identitynet_"),
                    io.Mask.Input("attn_mask", optional=True,
                                  tooltip="Where the face goes: limits both the adapter and IdentityNet.")],
            outputs=[io.Model.Output(tooltip="The patched model."),
                     io.Conditioning.Output("positive_out", display_name="positive", tooltip="With IdentityNet."),
                     io.Conditioning.Output("negative_out", display_name="negative", tooltip="With IdentityNet.")],
        )

    @classmethod
    def execute(cls, model, positive, negative, instantid, control_net, face_embeds, combine, noise, adapter_weight,
                identitynet_strength, adapter_start_percent, adapter_end_percent, identitynet_start_percent,
                identitynet_end_percent, keypoints=None, attn_mask=None) -> io.NodeOutput:
        node = "Infuse InstantID"
        _require_sdxl(model, node)
        cond, uncond = face_tokens(instantid, face_embeds, node, combine, noise)
        pos, neg = identitynet_conditioning(positive, negative, control_net, _keypoints(face_embeds, keypoints, node),
                                            cond, uncond, identitynet_strength, identitynet_start_percent,
                                            identitynet_end_percent, node, attn_mask)
        patched = model.clone()
        apply_ipadapter(patched, instantid, cond, uncond, node, weight=adapter_weight,
                        start_percent=adapter_start_percent, end_percent=adapter_end_percent, mask=attn_mask)
        return io.NodeOutput(patched, pos, neg)
