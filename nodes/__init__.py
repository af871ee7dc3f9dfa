"""ComfyUI nodes of the pack (V3 schema). Nodes stay thin: the work is in extractors/ and mechanisms/."""
from comfy_api.latest import ComfyExtension, io

from .inspect_model import InfuseAttentionSites

NODES: list[type[io.ComfyNode]] = [
    InfuseAttentionSites,
]


class InfuseExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODES)
