"""Every registered node presents itself to a ComfyUI artist: a display name starting with "Infuse", one of the
pack's four categories, a description, and a tooltip on every input and output. Checked on the V3 schema and on
the V1 info ComfyUI derives from it, which is what /object_info serves to the graph editor."""
import asyncio

import pytest

from support import comfy_env

if comfy_env.find_comfyui() is None:
    pytest.skip("the node schemas need the ComfyUI runtime", allow_module_level=True)

CATEGORIES = {"infuse/load", "infuse/extract", "infuse/apply", "infuse/inspect"}
MIN_TOOLTIP_WORDS = 5       # "The model." says nothing an artist needs


def registered_nodes():
    """The nodes ComfyUI gets from the pack's V3 entrypoint."""
    extension = asyncio.run(comfy_env.load_pack().comfy_entrypoint())
    return asyncio.run(extension.get_node_list())


NODES = registered_nodes()


def tooltip_problem(where: str, tooltip) -> list[str]:
    if not isinstance(tooltip, str) or not tooltip.strip():
        return [f"{where} has no tooltip"]
    if len(tooltip.split()) < MIN_TOOLTIP_WORDS:
        return [f"{where} has a placeholder tooltip ({tooltip!r}): say what it is, its range and what moving it does"]
    return []


def test_the_pack_registers_nodes():
    assert len(NODES) >= 15


@pytest.mark.parametrize("node", NODES, ids=lambda n: n.__name__)
def test_schema_names_category_and_description(node):
    schema = node.GET_SCHEMA()                 # ComfyUI's own validation runs here
    assert schema.display_name and schema.display_name.startswith("Infuse"), schema.node_id
    assert schema.category in CATEGORIES, f"{schema.node_id}: category {schema.category!r}"
    assert schema.description and schema.description.strip(), f"{schema.node_id} has no description"


@pytest.mark.parametrize("node", NODES, ids=lambda n: n.__name__)
def test_schema_tooltips_on_every_input_and_output(node):
    schema = node.GET_SCHEMA()
    assert schema.outputs, f"{schema.node_id} has no outputs"
    problems = []
    for inp in schema.inputs:
        problems += tooltip_problem(f"{schema.node_id} input {inp.id}", inp.tooltip)
    for n, out in enumerate(schema.outputs):
        problems += tooltip_problem(f"{schema.node_id} output {n} ({out.display_name or out.id})", out.tooltip)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("node", NODES, ids=lambda n: n.__name__)
def test_object_info_carries_the_presentation(node):
    info = node.GET_NODE_INFO_V1()
    schema = node.GET_SCHEMA()
    assert info["display_name"].startswith("Infuse") and info["category"] in CATEGORIES
    assert info["description"].strip()

    listed = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
    assert sorted(listed) == sorted(i.id for i in schema.inputs), "an input is missing from /object_info"
    problems = []
    for name, (_, options) in listed.items():
        problems += tooltip_problem(f"{info['name']} input {name}", options.get("tooltip"))
    assert len(info["output_tooltips"]) == len(info["output"])
    for n, tooltip in enumerate(info["output_tooltips"]):
        problems += tooltip_problem(f"{info['name']} output {n} ({info['output_name'][n]})", tooltip)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("node", NODES, ids=lambda n: n.__name__)
def test_every_output_is_named_for_what_it_is(node):
    """The editor labels an output with its display name, else its type: two outputs both labelled IMAGE
    (Face Analysis once had them) tell an artist nothing, and tooltips elsewhere refer to these names."""
    schema, info = node.GET_SCHEMA(), node.GET_NODE_INFO_V1()
    assert all(out.display_name for out in schema.outputs), f"{schema.node_id}: an output has no display name"
    names = info["output_name"]
    assert len(set(names)) == len(names), f"{schema.node_id}: outputs share a label {names}"
    assert not [n for n, t in zip(names, info["output"]) if n == t], f"{schema.node_id}: labelled by type {names}"
