"""Flux Redux with controls: strength, token downsampling, a mask over the reference, a sigma range."""
from comfy_api.latest import io

from ..core.errors import check_percent_range
from ..mechanisms.text_embedding.redux import DOWNSAMPLING_MODES, SIGLIP_FILE, STRENGTH_TYPES, apply_redux, redux_tokens
from .base import InfuseNode
from .presentation import schedule_inputs


class InfuseRedux(InfuseNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="InfuseRedux", display_name="Infuse Redux", category="infuse/apply",
            description="Flux Redux with controls: the reference image's tokens are appended to the prompt's "
                        "conditioning, with a strength, fewer tokens for a weaker image (downsampling), a mask "
                        "selecting part of the reference, and a start / end range. Connect Load Style Model "
                        "(flux1-redux-dev) and CLIP Vision Encode (with sigclip); feed the output to the sampler's "
                        "positive.",
            inputs=[
                io.Conditioning.Input("conditioning", tooltip="The prompt's conditioning (Flux, e.g. from CLIP Text "
                                                              "Encode or Flux Guidance); the Redux tokens are "
                                                              "appended to every entry."),
                io.StyleModel.Input("style_model", tooltip="The Flux Redux model (flux1-redux-dev.safetensors from "
                                                           "models/style_models), from Load Style Model."),
                io.ClipVisionOutput.Input(
                    "clip_vision_output",
                    tooltip=f"The reference image from CLIP Vision Encode with {SIGLIP_FILE} (SigLIP so400m-384; "
                            "a CLIP ViT-L / ViT-H does not fit Redux). With a mask, use crop 'none' there so the "
                            "mask covers the whole image (or center-crop the mask the same way as the image)."),
                io.Float.Input("strength", default=1.0, min=0.0, max=10.0, step=0.01,
                               tooltip="How strongly the reference acts, 0 to 10: 1 = as core Apply Style Model, "
                                       "0 = off (the conditioning passes unchanged). Lower it to let the prompt "
                                       "count more."),
                io.Combo.Input("strength_type", options=list(STRENGTH_TYPES), default="multiply",
                               tooltip="multiply: the Redux tokens are scaled by strength; attn_bias: the prompt "
                                       "and image attend to them with a log(strength) bias (the same two modes as "
                                       "core Apply Style Model)."),
                io.Int.Input("downsampling_factor", default=1, min=1, max=9,
                             tooltip="Shrinks the reference's 27x27 token grid by this factor, 1 to 9: 1 = all 729 "
                                     "tokens; 3 = 9x9 tokens, a much weaker image that leaves room for the prompt."),
                io.Combo.Input("downsampling_mode", options=list(DOWNSAMPLING_MODES), default="area",
                               tooltip="How the token grid is shrunk: area averages neighbouring tokens (smooth, "
                                       "recommended); bicubic / bilinear / nearest-exact keep sharper details."),
                *schedule_inputs("the reference"),
                io.Mask.Input("mask", optional=True,
                              tooltip="Optional: the part of the reference image to use. White = keep its tokens, "
                                      "black = drop them; same framing as the encoded image. Empty = the whole "
                                      "reference."),
            ],
            outputs=[io.Conditioning.Output("conditioning_out", display_name="conditioning",
                                            tooltip="The conditioning with the reference's Redux tokens: connect it "
                                                    "to the sampler's positive (or to another conditioning node).")],
        )

    @classmethod
    def execute(cls, conditioning, style_model, clip_vision_output, strength, strength_type, downsampling_factor,
                downsampling_mode, start_percent, end_percent, mask=None) -> io.NodeOutput:
        check_percent_range(start_percent, end_percent)
        if strength == 0.0:
            return io.NodeOutput(conditioning)
        tokens = redux_tokens(style_model, clip_vision_output, downsampling_factor, downsampling_mode, mask)
        return io.NodeOutput(apply_redux(conditioning, tokens, strength, strength_type, start_percent, end_percent))
