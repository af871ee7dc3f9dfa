"""ComfyUI-Infuse: image prompts as extractors x injection mechanisms, composable on one model.

Importing the pack registers its model folders and nothing heavier: insightface, onnxruntime and
open_clip load on first use. Nodes are registered through ComfyUI's V3 API (`comfy_entrypoint`).
"""
# ComfyUI imports this file as a package. pytest, collecting tests/ in a clone whose folder name is not a
# Python identifier (e.g. "ComfyUI-Infuse"), imports it as a plain module: there is nothing to register then.
if __package__:
    from .nodes.folders import register_model_folders

    register_model_folders()


async def comfy_entrypoint():
    from .nodes import InfuseExtension

    return InfuseExtension()
