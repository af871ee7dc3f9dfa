"""What counts as a problem in a workflow opened in the graph editor: the results that open_workflows.mjs
writes for one workflow, judged against the workflow file and the server's /object_info."""
import math
import warnings

PACK = "ComfyUI-Infuse"
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


def console_errors(messages: list[dict]) -> list[str]:
    return [f"console {m['type']}: {m['text'][:500]} {m['url']}".rstrip() for m in messages
            if m["type"] in ("error", "pageerror") and not is_thumbnail(m["url"])]


def is_thumbnail(url: str) -> bool:
    """The template browser asks for <name>.jpg beside each template; the pack ships none (a grey card)."""
    return f"/api/workflow_templates/{PACK}/" in url and url.rsplit(".", 1)[-1] in ("jpg", "webp", "png")


def same_value(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
    return a == b


def widget_problems(node: dict) -> list[str]:
    problems = []
    for w in node["widgets"]:
        where, value = f"node {node['id']} ({node['type']}) widget {w['name']!r} = {w['value']!r}", w["value"]
        if w["values"] is not None and value not in w["values"]:
            problems.append(f"{where}: not one of {w['values'][:12]}")
        if w["type"] == "number":
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                problems.append(f"{where}: not a number")
            elif (w["min"] is not None and value < w["min"]) or (w["max"] is not None and value > w["max"]):
                problems.append(f"{where}: outside [{w['min']}, {w['max']}]")
        if w["type"] == "toggle" and not isinstance(value, bool):
            problems.append(f"{where}: not a boolean")
    return problems


def widget_value_problems(want: dict, node: dict, info: dict | None) -> list[str]:
    """The file's widgets_values come back as they are. Values after them are allowed only for widgets the
    editor adds itself (control_after_generate after a seed): it gives those their default, with a warning."""
    values, loaded = want.get("widgets_values") or [], node["widgetsValues"]
    where = f"node {want['id']} ({want['type']})"
    if len(loaded) < len(values) or not all(map(same_value, values, loaded)):
        return [f"{where}: widgets_values {values} came back as {loaded}"]
    declared = {name for section in (info or {}).get("input", {}).values() for name in section}
    added = [w["name"] for w in node["widgets"]][len(values):len(loaded)]
    if any(name in declared for name in added):
        return [f"{where}: widgets_values {values} leave out declared inputs {added}: they came back as {loaded}"]
    if added:
        warnings.warn(f"{where}: the file leaves out the editor's own widgets {added}; the editor set "
                      f"{loaded[len(values):]}")
    return []


def schema_problems(node: dict, info: dict) -> list[str]:
    """An Infuse node as drawn against its /object_info entry: each declared input is a socket of its type or
    a widget, and the outputs are the declared ones."""
    where = f"node {node['id']} ({node['type']})"
    sockets = {i["name"]: i for i in node["inputs"]}
    widgets = {w["name"] for w in node["widgets"]}
    problems = []
    for section in ("required", "optional"):
        for name, spec in info["input"].get(section, {}).items():
            kind = "COMBO" if isinstance(spec[0], list) else spec[0]
            force_input = len(spec) > 1 and isinstance(spec[1], dict) and spec[1].get("forceInput")
            if kind in WIDGET_TYPES and not force_input:
                if name not in widgets:
                    problems.append(f"{where}: input {name!r} ({kind}) has no widget")
            elif name not in sockets:
                problems.append(f"{where}: input {name!r} ({kind}) has no socket")
            elif sockets[name]["type"] != kind:
                problems.append(f"{where}: socket {name!r} is {sockets[name]['type']}, /object_info says {kind}")
    declared = list(zip(info["output_name"], info["output"]))
    drawn = [(o["name"], o["type"]) for o in node["outputs"]]
    if drawn != declared:
        problems.append(f"{where}: outputs {drawn}, /object_info declares {declared}")
    return problems


def workflow_problems(workflow_name: str, workflow: dict, opened: dict, object_info: dict) -> list[str]:
    if opened.get("error"):
        return [opened["error"]]
    problems = [f"missing node type {t}" for t in opened["missing"]]
    if opened["activeWorkflow"] != workflow_name:
        problems.append(f"the editor's open workflow is {opened['activeWorkflow']!r}")
    problems += [f"dialog: {text[:500]}" for text in opened["dialogs"]]
    problems += console_errors(opened["console"])
    loaded = {n["id"]: n for n in opened["nodes"]}
    infuse = [n for n in workflow["nodes"] if n["type"].startswith("Infuse")]
    if not infuse:
        problems.append("the workflow has no Infuse node")
    for want in workflow["nodes"]:
        node = loaded.get(want["id"])
        if node is None or node["type"] != want["type"]:
            problems.append(f"node {want['id']} ({want['type']}) is not in the graph")
            continue
        if not node["registered"] or node["hasErrors"]:
            problems.append(f"node {want['id']} ({want['type']}) loaded as a placeholder with errors")
            continue
        problems += widget_value_problems(want, node, object_info.get(want["type"]))
        problems += widget_problems(node)
        if want["type"].startswith("Infuse"):
            if want["type"] in object_info:
                problems += schema_problems(node, object_info[want["type"]])
            else:
                problems.append(f"{want['type']} is not in /object_info")
    if sorted(map(tuple, opened["links"])) != sorted(map(tuple, workflow["links"])):
        problems.append(f"links changed on load: {workflow['links']} -> {opened['links']}")
    return problems + link_problems(workflow, opened)


def link_problems(workflow: dict, opened: dict) -> list[str]:
    """Every input the file connects is connected in the editor, through a link the graph holds."""
    links = {link[0]: link for link in opened["links"]}
    loaded = {n["id"]: n for n in opened["nodes"]}
    problems = []
    for want in workflow["nodes"]:
        node = loaded.get(want["id"])
        inputs = {i["name"]: (slot, i["link"]) for slot, i in enumerate(node["inputs"])} if node else {}
        for i in want.get("inputs", []):
            if i.get("link") is None:
                continue
            slot, link_id = inputs.get(i["name"], (None, None))
            link = links.get(link_id)
            if link is None or link[3] != want["id"] or link[4] != slot:
                problems.append(f"node {want['id']} ({want['type']}) input {i['name']!r}: link {i['link']} of "
                                f"the file is not connected in the editor")
    return problems
