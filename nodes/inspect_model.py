"""A node that shows which attention sites Infuse patches on a model, and how adapter files number them."""
from comfy_api.latest import io, ui

from ..mechanisms.patching.surfaces.unet import family_name, model_family, model_sites
from .base import InfuseNode


def site_table(model) -> str:
    family = model_family(model)
    sites = model_sites(model)
    lines = [f"{family_name(family)} UNet: {len(sites)} transformer blocks (attention sites)",
             "file index (attn1/attn2)  site (block:number:depth)  width  heads"]
    for n, site in enumerate(sites):
        lines.append(f"{2 * n:>4} / {2 * n + 1:<4}  {str(site):<24}  {site.inner_dim:>5}  {site.heads:>5}")
    return "\n".join(lines)


class InfuseAttentionSites(InfuseNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="InfuseAttentionSites",
            display_name="Infuse Attention Sites",
            category="infuse/inspect",
            description="Lists the model's attention sites in the order adapter files number them (down, up, then "
                        "middle block), shown on the node. Connect any model; use the site names in block_weights.",
            inputs=[io.Model.Input("model", tooltip="An SD1.5 or SDXL model (from Load Checkpoint, or after other "
                                                    "nodes); it is only read.")],
            outputs=[io.String.Output("sites", display_name="sites",
                                      tooltip="The site table as text (also shown on the node): the "
                                              "block:number:depth names block_weights uses, with widths "
                                              "and heads.")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, model) -> io.NodeOutput:
        text = site_table(model)
        return io.NodeOutput(text, ui=ui.PreviewText(text))
