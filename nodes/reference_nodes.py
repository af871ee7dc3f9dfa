"""Reference-only: the model's own pass on a reference latent feeds its self-attention (no extra weights)."""
from comfy_api.latest import io

from ..mechanisms.errors import InfuseError
from ..mechanisms.reference import MODES, ReferenceAttention, apply_reference, attn1_projections
from ..mechanisms.sites import model_sites

NODE = "Infuse Reference Only"


class InfuseReferenceOnly(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="InfuseReferenceOnly", display_name=NODE, category="infuse/apply",
            description="Runs the model on the reference latent (noised to the current step) and lets every "
                        "self-attention of the main pass attend over the reference's hidden states too. Works on "
                        "any SD1.5 / SDXL model; no extra weights.",
            inputs=[
                io.Model.Input("model", tooltip="SD1.5 or SDXL model (cloned, not changed)."),
                io.Latent.Input("reference", tooltip="The reference image as a latent (VAE Encode). The first "
                                                     "latent of a batch is used; its size may differ from the "
                                                     "generated image's."),
                io.Combo.Input("mode", options=list(MODES), default="concat",
                               tooltip="concat: self-attention over [image, reference] (IDM-VTON / reference-only); "
                                       "cross: an extra attention over the reference, added."),
                io.Float.Input("weight", default=1.0, min=0.0, max=2.0, step=0.01,
                               tooltip="1 = the full reference attention, 0 = off (style fidelity)."),
                io.Float.Input("start_percent", default=0.0, min=0.0, max=1.0, step=0.001,
                               tooltip="Where in the schedule it starts acting."),
                io.Float.Input("end_percent", default=1.0, min=0.0, max=1.0, step=0.001,
                               tooltip="Where in the schedule it stops acting."),
                io.Int.Input("cache_every", default=1, min=1, max=50,
                             tooltip="Recompute the reference features every k steps (1 = every step, exact)."),
                io.Int.Input("noise_seed", default=0, min=0, max=2 ** 31 - 1,
                             tooltip="Seed of the noise added to the reference latent."),
            ],
            outputs=[io.Model.Output(tooltip="The patched model.")],
        )

    @classmethod
    def execute(cls, model, reference, mode, weight, start_percent, end_percent, cache_every,
                noise_seed) -> io.NodeOutput:
        sites = model_sites(model, NODE)
        samples = reference["samples"]
        channels = model.model.latent_format.latent_channels
        if samples.ndim != 4 or samples.shape[0] == 0 or samples.shape[1] != channels:
            raise InfuseError(NODE, f"the reference latent has shape {tuple(samples.shape)}; this model's latents "
                                    f"have {channels} channels.",
                              "encode the reference image with this model's VAE (VAE Encode).", input_name="reference")
        patched = model.clone()
        latent = model.model.process_latent_in(samples[:1].float())
        contribution = ReferenceAttention(NODE, mode, latent, attn1_projections(patched, sites), weight=weight,
                                          start_percent=start_percent, end_percent=end_percent,
                                          cache_every=cache_every, seed=noise_seed)
        apply_reference(patched, contribution, sites)
        return io.NodeOutput(patched)
