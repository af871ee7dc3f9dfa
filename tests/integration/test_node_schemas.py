"""Every node's V3 schema validates and is presented the way the pack promises."""
import asyncio

import pytest

from support.comfy_env import load_pack

NODES = asyncio.run(asyncio.run(load_pack().comfy_entrypoint()).get_node_list())
CATEGORIES = {"infuse/extract", "infuse/apply", "infuse/load", "infuse/inspect"}


@pytest.mark.parametrize("node", NODES, ids=lambda n: n.__name__)
def test_schema_is_valid_and_documented(node):
    schema = node.GET_SCHEMA()          # runs ComfyUI's own schema validation
    assert schema.category in CATEGORIES
    assert schema.display_name.startswith("Infuse ") and schema.description
    for inp in schema.inputs:
        assert inp.tooltip, f"{schema.node_id}.{inp.id} has no tooltip"
    for out in schema.outputs:
        assert out.tooltip, f"{schema.node_id} output {out.id} has no tooltip"


def test_node_ids_are_unique():
    ids = [n.GET_SCHEMA().node_id for n in NODES]
    assert len(ids) == len(set(ids))
