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


@pytest.mark.parametrize("node", NODES, ids=lambda n: n.__name__)
def test_errors_of_the_math_are_reported_as_the_nodes_own(node):
    """Every node runs under the node base: an InfuseError raised without a node inside execute names this node."""
    from comfyui_infuse.core.errors import InfuseError
    from comfyui_infuse.nodes.base import InfuseNode

    assert issubclass(node, InfuseNode) and node.execute.__wrapped__

    class Probe(node):
        SOCKETS = {"param": "socket"}

        @classmethod
        def execute(cls, **kwargs):
            raise InfuseError("bad.", "fix it.", input_name="param")

    from comfy_api.internal import lock_class, shallow_clone_class

    for runs in (Probe, lock_class(shallow_clone_class(Probe))):      # how ComfyUI's executor runs a node
        with pytest.raises(InfuseError) as e:
            runs.execute()
        assert str(e.value) == f"{node.GET_SCHEMA().display_name}, input 'socket': bad. Fix: fix it."
