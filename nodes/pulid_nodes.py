"""PuLID nodes: load the PuLID file with its EVA-CLIP tower and face parser; apply PuLID to an SDXL or Flux model."""
import folder_paths
from comfy_api.latest import io

from ..core.files import shared_load
from ..extractors.eva_clip import load_eva_clip
from ..extractors.face_parsing import load_face_parser
from ..mechanisms.loaders.pulid_file import load_pulid
from ..mechanisms.recipes.pulid import COMBINE, METHODS, PulidBundle, pulid_on_model
from .base import InfuseNode
from .folders import find_model_file
from .presentation import APPLY_MODEL_TOOLTIP, MASK_TOOLTIP, no_face_note, patched_model_tooltip, schedule_inputs, \
    weight_input, with_note
from .types import FaceEmbedsType, PulidType


class InfuseLoadPuLID(InfuseNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="InfuseLoadPuLID", display_name="Infuse Load PuLID", category="infuse/load",
            description="Loads a PuLID file (SDXL v1 / v1.1 or Flux; recognised from the weights) with the EVA-CLIP "
                        "image tower and the BiSeNet face parser it needs. Connect it to pulid on Infuse PuLID.",
            inputs=[
                io.Combo.Input("pulid_file", options=folder_paths.get_filename_list("pulid"),
                               tooltip="From models/pulid: pulid_v1.bin or pulid_v1.1.safetensors (SDXL), "
                                       "pulid_flux_v0.9.1.safetensors (Flux), or cubiq's "
                                       "ip-adapter_pulid_sdxl_fp16.safetensors."),
                io.Combo.Input("eva_clip", options=folder_paths.get_filename_list("clip_vision"),
                               tooltip="EVA02_CLIP_L_336_psz14_s6B.pt (QuanSun/EVA-CLIP) from models/clip_vision; "
                                       "read without running code."),
                io.Combo.Input("face_parser", options=folder_paths.get_filename_list("facexlib"),
                               tooltip="facexlib's parsing_bisenet.pth from models/facexlib: it finds the "
                                       "background, hair-free skin and clothes PuLID masks out."),
            ],
            outputs=[PulidType.Output("pulid", display_name="pulid", tooltip="Connect to pulid on Infuse PuLID."),
                     io.String.Output("info", display_name="info", tooltip="What the files were recognised as.")],
        )

    @classmethod
    def execute(cls, pulid_file, eva_clip, face_parser) -> io.NodeOutput:
        bundle = PulidBundle(load_pulid(find_model_file("pulid", pulid_file, "pulid_file")),
                             shared_load(find_model_file("clip_vision", eva_clip, "eva_clip"), load_eva_clip),
                             shared_load(find_model_file("facexlib", face_parser, "face_parser"), load_face_parser))
        return io.NodeOutput(bundle, bundle.describe())


class InfusePuLID(InfuseNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="InfusePuLID", display_name="Infuse PuLID", category="infuse/apply",
            description="Gives the image a face's identity with PuLID, on SDXL or Flux (read from the model and the "
                        "file). Connect Infuse Load PuLID, and Infuse Face Analysis (antelopev2) of the face "
                        "photo(s) with the same photo(s); stacks with every other Infuse node on the model.",
            inputs=[
                io.Model.Input("model", tooltip=APPLY_MODEL_TOOLTIP),
                PulidType.Input("pulid", tooltip="From Infuse Load PuLID; its file made for this model (SDXL or "
                                                 "Flux)."),
                FaceEmbedsType.Input("face_embeds", tooltip="Infuse Face Analysis of the face photo(s), with "
                                                            "model_pack antelopev2 (PuLID's ArcFace)."),
                io.Image.Input("image", tooltip="The same photo(s) given to Infuse Face Analysis: EVA-CLIP reads "
                                                "the aligned, parsed face from them."),
                weight_input("weight", "How strongly the identity acts, -1 to 5 (SDXL: 0.8 as the reference app; "
                                       "Flux: 1). 0 = off."),
                *schedule_inputs("PuLID"),
                io.Combo.Input("method", options=list(METHODS), default="fidelity",
                               tooltip="SDXL only (Flux ignores it), as the reference apps: fidelity = ortho_v2 "
                                       "with 8 zero tokens (v1) / 20 (v1.1), the closest likeness; style = ortho "
                                       "with 16 (v1) / 20 (v1.1) zero tokens, follows the prompt's style more; "
                                       "neutral = plain addition."),
                io.Combo.Input("combine", options=list(COMBINE), default="mean",
                               tooltip="Several face photos: mean = their ID tokens averaged; concat = read "
                                       "together, as PuLID's own several-image input."),
                io.Mask.Input("attn_mask", optional=True, tooltip=MASK_TOOLTIP.format(subject="the identity")),
                io.Int.Input("zero_tokens", default=-1, min=-1, max=80, optional=True,
                             tooltip="SDXL only: zero tokens added to the ID tokens in attention (the v1.1 app's "
                                     "num_zero slider, 0 to 80); -1 = the method's."),
            ],
            outputs=[io.Model.Output("model_out", display_name="model", tooltip=patched_model_tooltip("PuLID"))],
        )

    @classmethod
    def execute(cls, model, pulid, face_embeds, image, weight, start_percent, end_percent, method, combine,
                attn_mask=None, zero_tokens=-1) -> io.NodeOutput:
        patched = pulid_on_model(model, pulid, face_embeds, image, weight, start_percent, end_percent, method,
                                 combine, attn_mask, zero_tokens=zero_tokens)
        return io.NodeOutput(patched, ui=with_note(None, no_face_note(face_embeds, "PuLID")))
