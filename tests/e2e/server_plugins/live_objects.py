"""Test-only custom node file for the memory test's own e2e server: GET /infuse_test/live_objects
counts the objects of the classes a leaking patch would leave behind, after a full garbage collection.
Defines no nodes."""
import gc
from collections import Counter

from aiohttp import web
from server import PromptServer

WATCHED = ("ModelPatcher", "SiteDispatcher", "DecoupledCrossAttention", "ImageEmbeds", "FaceEmbeds")


@PromptServer.instance.routes.get("/infuse_test/live_objects")
async def live_objects(request):
    gc.collect()
    counts = Counter(type(o).__name__ for o in gc.get_objects() if type(o).__name__ in WATCHED)
    return web.json_response({name: counts.get(name, 0) for name in WATCHED})


NODE_CLASS_MAPPINGS = {}
