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


def editor_widget_problems(node: dict, info: dict) -> list[str]:
    """The widgets the editor made, as widget_slots (the browser-free check's model of the editor) predicts."""
    own = {"CONTROL": "control_after_generate", "FILTER": "control_filter_list", "UPLOAD": "upload"}
    predicted = [own.get(kind, name) for name, kind, _ in widget_slots(info)]
    made = [w["name"] for w in node["widgets"] if w.get("serialize", True)]
    if made != predicted:
        return [f"node {node['id']} ({node['type']}): the editor made widgets {made}, widget_slots predicts "
                f"{predicted}"]
    return []


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
        if want["type"] in object_info:
            problems += editor_widget_problems(node, object_info[want["type"]])
        if want["type"].startswith("Infuse"):
            if want["type"] in object_info:
                problems += schema_problems(node, object_info[want["type"]])
            else:
                problems.append(f"{want['type']} is not in /object_info")
    if sorted(map(tuple, opened["links"])) != sorted(map(tuple, workflow["links"])):
        problems.append(f"links changed on load: {workflow['links']} -> {opened['links']}")
    return problems + link_problems(workflow, opened) + view_problems(opened)


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


# --- the view a workflow opens at ------------------------------------------------------------------------------
# Below the frontend's low-quality threshold (LiteGraph.Canvas.MinFontSizeForLOD = 8 px over a 14 px font: 0.57
# at devicePixelRatio 1) every node is a blank box; just above it, 14 px text is 8 px. 0.75 keeps it >= 10.5 px.
READABLE_SCALE = 0.75


def view_problems(opened: dict) -> list[str]:
    """The workflow opens readable (not low quality, zoom >= READABLE_SCALE) with every node on the canvas, none
    under the minimap or the zoom buttons."""
    view, problems = opened["view"], []
    if not view["minFontSizeForLOD"]:
        problems.append("the editor's low-quality rendering is off (LiteGraph.Canvas.MinFontSizeForLOD = 0): the "
                        "test must run with the editor's default settings")
    need = max(READABLE_SCALE, view["lowQualityBelow"] or 0)
    if view["lowQuality"] or view["scale"] < need:
        problems.append(f"opens at zoom {view['scale']:.2f}, below {need:.2f}: the editor draws nodes as grey boxes "
                        f"below {view['lowQualityBelow'] or 0:.2f} and text is small under {READABLE_SCALE} "
                        f"(low quality: {view['lowQuality']}); lay it out smaller or set extra.ds")
    cx, cy, cw, ch = view["canvasRect"]
    for node in opened["nodes"]:
        x, y, w, h = node["screenRect"]
        where = f"node {node['id']} ({node['type']}) at {[round(v) for v in node['screenRect']]}"
        if x < cx - 0.5 or y < cy - 0.5 or x + w > cx + cw + 0.5 or y + h > cy + ch + 0.5:
            problems.append(f"{where} is not all on the canvas {[round(v) for v in view['canvasRect']]}")
        for overlay in view["overlays"]:
            ox, oy, ow, oh = overlay["rect"]
            if x < ox + ow and ox < x + w and y < oy + oh and oy < y + h:
                problems.append(f"{where} is under the {overlay['what']} {[round(v) for v in overlay['rect']]}")
    return problems


# --- widgets_values against /object_info, without a browser ---------------------------------------------------
# The editor (comfyui-frontend-package 1.27) makes one widget per widget-type input, in input_order (required, then
# optional), except forceInput ones; an INT with control_after_generate (or named seed / noise_seed) gets a
# control_after_generate combo after it, a COMBO with it a control combo and a filter string; a combo with
# image_upload (video_upload, animated_image_upload) an upload widget after the others. widgets_values holds
# each widget's value in that order.
UI_ONLY_TYPES = {"Note", "MarkdownNote"}
CONTROL_VALUES = ["fixed", "increment", "decrement", "randomize"]
UPLOAD_FLAGS = ("image_upload", "video_upload", "animated_image_upload")


def _kind(spec: list) -> tuple[str, dict]:
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if isinstance(spec[0], list):
        return "COMBO", dict(options, options=spec[0])
    return spec[0], options


def ordered_inputs(info: dict) -> list[tuple[str, list]]:
    """(name, spec) of every input, in the order the editor adds them."""
    order, inputs = info.get("input_order") or {}, info.get("input", {})
    if not order:
        return [item for section in ("required", "optional") for item in inputs.get(section, {}).items()]
    named = [(name, inputs[section][name]) for section in ("required", "optional")
             for name in order.get(section, []) if name in inputs.get(section, {})]
    seen = {name for name, _ in named}
    return named + [item for section in ("required", "optional") for item in inputs.get(section, {}).items()
                    if item[0] not in seen]


def widget_slots(info: dict) -> list[tuple[str, str, dict]]:
    """(name, kind, options) for each value widgets_values holds, in order; kind is an input type or one of the
    editor's own CONTROL / FILTER / UPLOAD widgets."""
    slots, upload = [], None
    for name, spec in ordered_inputs(info):
        kind, options = _kind(spec)
        if kind not in WIDGET_TYPES or options.get("forceInput"):
            continue
        slots.append((name, kind, options))
        control = options.get("control_after_generate")
        if kind == "INT" and (control if control is not None else name in ("seed", "noise_seed")):
            slots.append((f"{name}: control_after_generate", "CONTROL", {"options": CONTROL_VALUES}))
        elif kind == "COMBO" and control:
            slots.append((f"{name}: control_after_generate", "CONTROL",
                          {"options": CONTROL_VALUES + ["increment-wrap"]}))
            slots.append((f"{name}: control_filter_list", "FILTER", {}))
        if kind == "COMBO" and any(options.get(flag) for flag in UPLOAD_FLAGS):
            upload = ("upload", "UPLOAD", {})
    if upload:  # the upload widget joins the required inputs after input_order's, so it comes last
        slots.append(upload)
    return slots


def value_problem(kind: str, options: dict, value) -> str | None:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind in ("COMBO", "CONTROL"):
        if options.get("remote"):
            return None
        choices = options.get("options") or []
        return None if value in choices else f"not one of {choices[:12]}{' ...' if len(choices) > 12 else ''}"
    if kind == "INT" and not (number and float(value).is_integer()):
        return "not an integer"
    if kind == "FLOAT" and not number:
        return "not a number"
    if kind in ("INT", "FLOAT"):
        low, high = options.get("min"), options.get("max")
        if (low is not None and value < low) or (high is not None and value > high):
            return f"outside [{low}, {high}]"
    if kind == "BOOLEAN" and not isinstance(value, bool):
        return "not a boolean"
    if kind in ("STRING", "FILTER", "UPLOAD") and not isinstance(value, str):
        return "not a string"
    return None


def widget_layout_problems(workflow: dict, object_info: dict, api: dict | None = None) -> list[str]:
    """Each node's widgets_values against the widgets /object_info implies: the count, each value's type and
    range, linked inputs that exist with the declared type; with the API twin, the same value under each name."""
    problems = []
    for node in workflow["nodes"]:
        where, values = f"node {node['id']} ({node['type']})", node.get("widgets_values") or []
        if node["type"] in UI_ONLY_TYPES:
            if len(values) != 1 or not isinstance(values[0], str):
                problems.append(f"{where}: widgets_values {values} should be one text")
            continue
        info = object_info.get(node["type"])
        if info is None:
            problems.append(f"{where}: not in /object_info")
            continue
        slots = widget_slots(info)
        if not isinstance(values, list) or len(values) != len(slots):
            problems.append(f"{where}: {len(values)} widgets_values {values} for {len(slots)} widgets "
                            f"{[name for name, _, _ in slots]}")
        for (name, kind, options), value in zip(slots, values):
            problem = value_problem(kind, options, value)
            if problem:
                problems.append(f"{where}: widget {name!r} ({kind}) = {value!r}: {problem}")
        declared = dict(ordered_inputs(info))
        for socket in node.get("inputs", []):
            if socket.get("link") is None:
                continue
            spec = declared.get(socket["name"])
            if spec is None:
                problems.append(f"{where}: linked input {socket['name']!r} is not declared")
            elif _kind(spec)[0] not in WIDGET_TYPES and _kind(spec)[0] != socket["type"]:
                problems.append(f"{where}: input {socket['name']!r} is {socket['type']}, declared {_kind(spec)[0]}")
        if api is not None and str(node["id"]) in api:
            twin = api[str(node["id"])]["inputs"]
            for (name, kind, _), value in zip(slots, values):
                if kind in ("CONTROL", "FILTER", "UPLOAD"):
                    continue
                if name not in twin:
                    problems.append(f"{where}: widget {name!r} = {value!r} is not in the API twin")
                elif not same_value(twin[name], value):
                    problems.append(f"{where}: widget {name!r} = {value!r}, the API twin says {twin[name]!r}")
    return problems
