"""IDM-VTON virtual try-on: load its two UNets, make a box mask, wire garment + person onto the try-on UNet."""
import comfy.utils
import folder_paths
import torch
from comfy_api.latest import io

from ..core.errors import InfuseError
from ..mechanisms.loaders.tryon_models import load_garment_unet, load_tryon_unet
from ..mechanisms.recipes.idm_vton import check_garment_unet, masked_person, prepare_images, try_on
from .base import InfuseNode
from .folders import find_model_file
from .presentation import preview_images, with_note
from .types import GarmentUNetType

LOAD = "Infuse Load IDM-VTON"
APPLY = "Infuse Try-On"
MASK = "Infuse Try-On Mask"
UNET_FOLDER = "diffusion_models"
DIFFUSERS_WEIGHTS = "diffusion_pytorch_model"
DTYPES = {"default": None, "fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def _split(path: str) -> tuple[str, str]:
    folder, _, name = path.replace("\\", "/").rpartition("/")
    return folder, name


def unet_choices() -> list[str]:
    """What the loader lists: a diffusers UNet folder by its folder ('IDM-VTON/unet', short enough to read on the
    node), any other weight file in diffusion_models by its path."""
    choices = []
    for path in folder_paths.get_filename_list(UNET_FOLDER):
        folder, name = _split(path)
        choice = folder if folder and name.startswith(DIFFUSERS_WEIGHTS) else path
        if choice not in choices:
            choices.append(choice)
    return choices


def unet_file(choice: str, input_name: str) -> str:
    """The weight file behind a choice: a folder's diffusers weights (plain before fp16, first shard), or the file
    itself (saved workflows name 'IDM-VTON/unet/diffusion_pytorch_model.safetensors')."""
    in_folder = sorted((p for p in folder_paths.get_filename_list(UNET_FOLDER)
                        if _split(p)[0] == choice and _split(p)[1].startswith(DIFFUSERS_WEIGHTS)),
                       key=lambda p: (".fp16" in p, p))
    return find_model_file(UNET_FOLDER, in_folder[0] if in_folder else choice, input_name)


class InfuseLoadIDMVTON(InfuseNode):
    @classmethod
    def define_schema(cls):
        files = unet_choices()
        return io.Schema(
            node_id="InfuseLoadIDMVTON", display_name=LOAD, category="infuse/load",
            description="Loads IDM-VTON's try-on UNet (unet/, 13 input channels, with its image prompt) and garment "
                        "UNet (unet_encoder/) from their diffusers folders into ComfyUI's model management. Put the "
                        "release folder in models/diffusion_models and pick the two weight files.",
            inputs=[
                io.Combo.Input("tryon_unet", options=files,
                               tooltip="IDM-VTON's unet folder (diffusion_pytorch_model.safetensors with config.json, "
                                       "fp16 or sharded weights too), listed as e.g. IDM-VTON/unet."),
                io.Combo.Input("garment_unet", options=files,
                               tooltip="The garment UNet, which reads the garment photo: IDM-VTON's unet_encoder "
                                       "folder, listed as e.g. IDM-VTON/unet_encoder."),
                io.Combo.Input("weight_dtype", options=list(DTYPES), default="default",
                               tooltip="Precision of both UNets in memory. default = what ComfyUI picks for your GPU "
                                       "(fp16 on most); fp32 doubles the memory."),
            ],
            outputs=[io.Model.Output("tryon_model", display_name="tryon_model",
                                     tooltip="The try-on UNet: connect it to Infuse Try-On."),
                     GarmentUNetType.Output("garment_model", display_name="garment_unet",
                                            tooltip="The garment UNet: connect it to Infuse Try-On.")],
        )

    @classmethod
    def validate_inputs(cls, tryon_unet, garment_unet):
        """Folder choices and the file paths saved workflows hold are both valid; a missing one is named by
        execute with every folder searched."""
        return True

    @classmethod
    def execute(cls, tryon_unet, garment_unet, weight_dtype) -> io.NodeOutput:
        dtype = DTYPES.get(weight_dtype)
        model, _ = load_tryon_unet(unet_file(tryon_unet, "tryon_unet"), dtype=dtype)
        garment = load_garment_unet(unet_file(garment_unet, "garment_unet"), dtype=dtype)
        check_garment_unet(model, garment)
        return io.NodeOutput(model, garment)


class InfuseTryOnMask(InfuseNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="InfuseTryOnMask", display_name=MASK, category="infuse/extract",
            description="A rectangular inpaint mask over the person image: the area the garment replaces. For "
                        "tighter masks use a human-parsing / segmentation node of your choice.",
            inputs=[
                io.Image.Input("person", tooltip="The person image; the mask gets its size."),
                io.Int.Input("x", default=0, min=0, max=16384, tooltip="Left edge of the box, in pixels."),
                io.Int.Input("y", default=0, min=0, max=16384, tooltip="Top edge of the box, in pixels."),
                io.Int.Input("width", default=512, min=1, max=16384, tooltip="Box width in pixels (cut at the image "
                                                                             "edge)."),
                io.Int.Input("height", default=512, min=1, max=16384, tooltip="Box height in pixels (cut at the "
                                                                              "image edge)."),
            ],
            outputs=[io.Mask.Output("mask", display_name="mask",
                                    tooltip="White inside the box: connect to Infuse Try-On's mask.")],
        )

    @classmethod
    def execute(cls, person, x, y, width, height) -> io.NodeOutput:
        h, w = person.shape[1], person.shape[2]
        if x >= w or y >= h:
            raise InfuseError(f"the box starts at ({x}, {y}), outside the {w}x{h} image.",
                              f"set x below {w} and y below {h}.", input_name="x" if x >= w else "y")
        mask = torch.zeros(1, h, w)
        mask[:, y:y + height, x:x + width] = 1.0
        return io.NodeOutput(mask, ui=preview_images(cls, masked_person(person[:1].float(), mask)))


class InfuseTryOn(InfuseNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="InfuseTryOn", display_name=APPLY, category="infuse/apply",
            description="IDM-VTON virtual try-on: the garment UNet reads the garment and every self-attention of the "
                        "try-on UNet looks at it, the garment's CLIP embeds drive its image prompt, and the mask, "
                        "masked person and pose go in as extra input channels. Sample the outputs with KSampler at "
                        "denoise 1 (the reference uses 30 steps, cfg 2).",
            inputs=[
                io.Model.Input("model", tooltip="The try-on UNet from Infuse Load IDM-VTON (cloned, not changed)."),
                GarmentUNetType.Input("garment_unet", tooltip="The garment UNet from Infuse Load IDM-VTON."),
                io.Vae.Input("vae", tooltip="The SDXL VAE (e.g. from the SDXL checkpoint IDM-VTON builds on)."),
                io.Clip.Input("clip", tooltip="The SDXL text encoders, for the garment description."),
                io.ClipVision.Input("clip_vision", tooltip="CLIP ViT-H (IDM-VTON's image encoder) for the garment's "
                                                           "image prompt."),
                io.Conditioning.Input("positive", tooltip="The prompt, e.g. 'model is wearing a red t-shirt'."),
                io.Conditioning.Input("negative", tooltip="The negative prompt, e.g. 'monochrome, lowres, bad "
                                                          "anatomy, worst quality, low quality'."),
                io.Image.Input("person", tooltip="The person photo (the first image of a batch). It sets the output "
                                                 "size (the reference uses 768x1024), cropped to a multiple of 8 px."),
                io.Image.Input("garment", tooltip="The garment photo (the first image of a batch: one garment per "
                                                  "run, queue more runs for more); resized to the person's size, as "
                                                  "in the reference pipeline."),
                io.Mask.Input("mask", tooltip="White where the garment goes; the person image's size exactly (e.g. "
                                              "Infuse Try-On Mask, or a segmentation node on the same image)."),
                io.Image.Input("pose", tooltip="DensePose image of the person (a DensePose preprocessor node); same "
                                               "aspect ratio as the person, resized to its size."),
                io.String.Input("garment_description", default="a shirt", multiline=False,
                                tooltip="What the garment is, e.g. 'short sleeve round neck t-shirt'. The garment UNet "
                                        "reads 'a photo of <description>'."),
                io.Float.Input("garment_weight", default=1.0, min=0.0, max=2.0, step=0.01,
                               tooltip="How strongly the try-on UNet attends to the garment UNet's features: 1 = "
                                       "the reference, 0 = off."),
                io.Float.Input("image_prompt_weight", default=1.0, min=0.0, max=2.0, step=0.01,
                               tooltip="Weight of the garment's image prompt (IP-Adapter): 1 = the reference, 0 = "
                                       "off."),
                io.Int.Input("cache_every", default=1, min=1, max=50,
                             tooltip="Run the garment UNet every k steps and reuse its features in between: 1 = "
                                     "exact (the reference), 4 = about a third faster with a small change."),
            ],
            outputs=[io.Model.Output("model_out", display_name="model",
                                     tooltip="The try-on UNet with the garment wired in: to KSampler."),
                     io.Conditioning.Output("positive_out", display_name="positive",
                                            tooltip="The positive prompt with mask, masked person and "
                                                    "pose attached: to KSampler."),
                     io.Conditioning.Output("negative_out", display_name="negative",
                                            tooltip="The negative prompt with the same attached."),
                     io.Latent.Output("latent", display_name="latent",
                                      tooltip="An empty latent of the person's size: to KSampler "
                                              "(denoise 1).")],
        )

    @classmethod
    def execute(cls, model, garment_unet, vae, clip, clip_vision, positive, negative, person, garment, mask, pose,
                garment_description, garment_weight, image_prompt_weight, cache_every) -> io.NodeOutput:
        images = prepare_images(person, garment, mask, pose)
        bar = comfy.utils.ProgressBar(3)
        outputs = try_on(model, garment_unet, vae, clip, clip_vision, positive, negative, images, garment_description,
                         garment_weight, image_prompt_weight, cache_every, progress=bar.update)
        note = f"One person and one garment per run ({'; '.join(images.extra)})." if images.extra else None
        return io.NodeOutput(*outputs, ui=with_note(preview_images(cls, masked_person(images.person, images.mask)),
                                                    note))
