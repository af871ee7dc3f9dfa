"""PhotoMaker nodes: load a PhotoMaker file (v1 / v2); encode a prompt with the photos' stacked ID embedding."""
import folder_paths
from comfy_api.latest import io

from ..core.files import shared_load
from ..mechanisms.loaders.photomaker_file import load_photomaker
from ..mechanisms.recipes.photomaker import photomaker_on
from .base import InfuseNode
from .folders import find_model_file
from .presentation import schedule_inputs
from .types import FaceEmbedsType, PhotoMakerType


class InfuseLoadPhotoMaker(InfuseNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="InfuseLoadPhotoMaker", display_name="Infuse Load PhotoMaker", category="infuse/load",
            description="Loads a PhotoMaker file, v1 or v2 (recognised from the weights), with its LoRA. The files "
                        "kept for core's PhotoMaker Loader load here unchanged.",
            inputs=[io.Combo.Input("photomaker_file", options=folder_paths.get_filename_list("photomaker"),
                                   tooltip="From models/photomaker: photomaker-v1.bin (TencentARC/PhotoMaker) or "
                                           "photomaker-v2.bin (TencentARC/PhotoMaker-V2); .safetensors copies too.")],
            outputs=[PhotoMakerType.Output("photomaker", display_name="photomaker",
                                           tooltip="Connect to photomaker on Infuse PhotoMaker."),
                     io.String.Output("info", display_name="info", tooltip="What the file was recognised as.")],
        )

    @classmethod
    def execute(cls, photomaker_file) -> io.NodeOutput:
        model = shared_load(find_model_file("photomaker", photomaker_file, "photomaker_file"), load_photomaker)
        return io.NodeOutput(model, model.describe())


class InfusePhotoMaker(InfuseNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="InfusePhotoMaker", display_name="Infuse PhotoMaker", category="infuse/apply",
            description="PhotoMaker (SDXL): the prompt's class word followed by the trigger word (\"a photo of a man "
                        "img\") stands for the person in the photos. Every photo is used (stacked), the file's "
                        "LoRA is applied to the model, and before start_percent the prompt acts without the ID, as "
                        "the reference's style strength. Feed positive to the sampler.",
            inputs=[
                io.Model.Input("model", tooltip="The SDXL model; PhotoMaker's LoRA is applied to it."),
                io.Clip.Input("clip", tooltip="The SDXL checkpoint's CLIP: the prompt is encoded here."),
                PhotoMakerType.Input("photomaker",
                                     tooltip="The PhotoMaker file (v1 or v2) from Infuse Load PhotoMaker."),
                io.Image.Input("images", tooltip="Photos of the person, one or more (a batch): each adds its ID "
                                                 "token(s) after the class word."),
                io.String.Input("text", multiline=True, default="a photo of a man img, natural light",
                                tooltip="The prompt, with the trigger word once, right after the class word "
                                        "(man, woman, boy, girl, ...)."),
                io.String.Input("trigger_word", default="img",
                                tooltip="The word that marks the class word; one CLIP token (img as the reference). "
                                        "It is taken out of the prompt."),
                *schedule_inputs("the ID"),
                io.Float.Input("lora_strength", default=1.0, min=-2.0, max=2.0, step=0.01,
                               tooltip="Strength of the file's LoRA on the model (1 as the reference; 0 = off)."),
                FaceEmbedsType.Input("face_embeds", optional=True,
                                     tooltip="v2 only: Infuse Face Analysis of the same photos (buffalo_l, as the "
                                             "reference, or antelopev2)."),
            ],
            outputs=[io.Model.Output("model_out", display_name="model", tooltip="The model with PhotoMaker's LoRA."),
                     io.Conditioning.Output("positive", display_name="positive",
                                            tooltip="The prompt with the ID: connect to the sampler's positive.")],
        )

    @classmethod
    def execute(cls, model, clip, photomaker, images, text, trigger_word, start_percent, end_percent, lora_strength,
                face_embeds=None) -> io.NodeOutput:
        return io.NodeOutput(*photomaker_on(model, clip, photomaker, images, text, trigger_word, start_percent,
                                            end_percent, lora_strength, face_embeds))
