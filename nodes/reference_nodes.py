"""Reference-only: the model's own pass on a reference latent feeds its self-attention (no extra weights)."""
from comfy_api.latest import io

from ..core.errors import InfuseError
from ..mechanisms.patching.surfaces.unet import model_sites
from ..mechanisms.reference_attention.reference import MODES, ReferenceAttention, apply_reference, attn1_projections
from .base import InfuseNode
from .presentation import APPLY_MODEL_TOOLTIP, patched_model_tooltip, schedule_inputs

NODE = "Infuse Reference Only"
MIN_LATENT = 4          # 32 px: below it the UNet's deepest blocks see a 1x1 grid (GroupNorm can fail on one value)


class InfuseReferenceOnly(InfuseNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="InfuseReferenceOnly", display_name=NODE, category="infuse/apply",
            description="Makes the generation follow a reference image with no extra weights: the model also runs "
                        "on the reference latent and every self-attention looks at it. Connect a model and the "
                        "reference image's VAE Encode latent; feed the model to KSampler.",
            inputs=[
                io.Model.Input("model", tooltip=APPLY_MODEL_TOOLTIP),
                io.Latent.Input("reference", tooltip="The reference image as a latent (VAE Encode with this model's "
                                                     "VAE). The first latent of a batch is used; its size may "
                                                     "differ from the generated image's."),
                io.Combo.Input("mode", options=list(MODES), default="concat",
                               tooltip="concat: each self-attention looks at the image and the reference together "
                                       "(IDM-VTON / reference-only); cross: a separate attention over the reference, "
                                       "added on top."),
                io.Float.Input("weight", default=1.0, min=0.0, max=2.0, step=0.01,
                               tooltip="How much the reference is followed, 0 to 2: 1 = the full reference "
                                       "attention, 0 = off. Lower it for a looser likeness to the reference."),
                *schedule_inputs("the reference"),
                io.Int.Input("cache_every", default=1, min=1, max=50,
                             tooltip="Recompute the reference every k steps, 1 to 50: 1 = every step (exact, one "
                                     "extra model pass per step); higher = faster sampling, slightly less exact."),
                io.Int.Input("noise_seed", default=0, min=0, max=2 ** 31 - 1,
                             tooltip="Seed of the noise added to the reference latent at each step: another seed "
                                     "varies the result slightly; keep it to reproduce an image."),
            ],
            outputs=[io.Model.Output("model_out", display_name="model",
                                     tooltip=patched_model_tooltip("reference attention"))],
        )

    @classmethod
    def execute(cls, model, reference, mode, weight, start_percent, end_percent, cache_every,
                noise_seed) -> io.NodeOutput:
        sites = model_sites(model)
        samples = reference["samples"]
        channels = model.model.latent_format.latent_channels
        if samples.ndim != 4 or samples.shape[0] == 0 or samples.shape[1] != channels:
            raise InfuseError(f"the reference latent has shape {tuple(samples.shape)}; this model's latents "
                              f"have {channels} channels.",
                              "encode the reference image with this model's VAE (VAE Encode).", input_name="reference")
        if min(samples.shape[-2:]) < MIN_LATENT:
            h, w = samples.shape[-2:]
            raise InfuseError(f"the reference latent is {w}x{h} ({w * 8}x{h * 8} px); the model's pass on it "
                              f"needs at least {MIN_LATENT}x{MIN_LATENT} ({MIN_LATENT * 8}x{MIN_LATENT * 8} px).",
                              f"use a reference image of at least {MIN_LATENT * 8}x{MIN_LATENT * 8} pixels (upscale "
                              "it first, e.g. Upscale Image).", input_name="reference")
        patched = model.clone()
        latent = model.model.process_latent_in(samples[:1].float())
        contribution = ReferenceAttention(NODE, mode, latent, attn1_projections(patched, sites), weight=weight,
                                          start_percent=start_percent, end_percent=end_percent,
                                          cache_every=cache_every, seed=noise_seed)
        apply_reference(patched, contribution, sites)
        return io.NodeOutput(patched)
