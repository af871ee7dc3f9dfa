"""Token replace: image tokens in place of (or after) a word of the prompt, in its conditioning."""
from comfy_api.latest import io

from ..mechanisms.text_embedding.token_replace import MODES, token_replace_conditioning
from .base import InfuseNode
from .presentation import schedule_inputs
from .types import ImageEmbedsType


class InfuseTokenReplace(InfuseNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="InfuseTokenReplace", display_name="Infuse Token Replace", category="infuse/apply",
            description="Encodes the prompt with image tokens where a placeholder word stands (ELITE / AnyDoor "
                        "style): one token per image of the embeds, each as wide as the text embedding, replacing "
                        "the word or after it. PhotoMaker uses the same mechanism for its class word.",
            inputs=[
                io.Clip.Input("clip", tooltip="The model's CLIP: the prompt is encoded here."),
                io.String.Input("text", multiline=True, default="a photo of sks in the snow",
                                tooltip="The prompt, with the placeholder word once."),
                io.String.Input("word", default="sks", tooltip="The placeholder word: one CLIP token (sks, ohwx, "
                                                               "img, ...)."),
                ImageEmbedsType.Input("embeds", tooltip="One token per image: the pooled embeds, already as wide as "
                                                        "the text embedding (SDXL 2048, SD1.5 768), e.g. from a "
                                                        "projection trained for it, loaded with Infuse Load Image "
                                                        "Embeds."),
                io.Combo.Input("mode", options=list(MODES), default="replace",
                               tooltip="replace: the tokens stand where the word was; after: the word stays and the "
                                       "tokens follow it."),
                *schedule_inputs("the image tokens"),
            ],
            outputs=[io.Conditioning.Output("conditioning", display_name="conditioning",
                                            tooltip="The prompt with the image tokens: connect to positive.")],
        )

    @classmethod
    def execute(cls, clip, text, word, embeds, mode, start_percent, end_percent) -> io.NodeOutput:
        return io.NodeOutput(token_replace_conditioning(clip, text, word, embeds.pooled.float(), mode, start_percent,
                                                        end_percent))
