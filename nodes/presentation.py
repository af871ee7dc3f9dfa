"""How the pack's nodes present themselves: inputs and tooltips several nodes share, on-node previews of
intermediate images, and progress bars for loops over images."""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from comfy_api.latest import io, ui

T = TypeVar("T")

APPLY_MODEL_TOOLTIP = ("The model to patch: an SD1.5 or SDXL model (e.g. from Load Checkpoint). It is cloned, the "
                       "input stays unchanged; Infuse nodes chained on one model add up.")
SDXL_MODEL_TOOLTIP = ("An SDXL model (InstantID is SDXL only). It is cloned, the input stays unchanged; other Infuse "
                      "nodes chained on it add up.")
MASK_TOOLTIP = ("Optional: where {subject} acts. White = full effect, black = none, grey in between. Any size with "
                "the generated image's aspect ratio; empty = the whole image.")


def patched_model_tooltip(what: str) -> str:
    return f"The model with {what}: connect it to KSampler, or to another Infuse apply node to stack more."


def schedule_inputs(subject: str, prefix: str = "") -> list[io.Float.Input]:
    """The start / end percent pair of a mechanism (ids `{prefix}start_percent`, `{prefix}end_percent`)."""
    return [io.Float.Input(f"{prefix}start_percent", default=0.0, min=0.0, max=1.0, step=0.001,
                           tooltip=f"When {subject} starts acting, as a fraction of the sampling steps (0 to 1; 0 = "
                                   "from the first step). Raise it to let the prompt set the composition first."),
            io.Float.Input(f"{prefix}end_percent", default=1.0, min=0.0, max=1.0, step=0.001,
                           tooltip=f"When {subject} stops acting, as a fraction of the sampling steps (0 to 1; 1 = "
                                   "until the last step). Lower it to leave the final details to the prompt.")]


def weight_input(name: str, tooltip: str) -> io.Float.Input:
    """An adapter weight, -1 to 5 (1 = as trained, 0 = off, negative pushes away)."""
    return io.Float.Input(name, default=1.0, min=-1.0, max=5.0, step=0.01, tooltip=tooltip)


def preview_images(cls, *batches) -> ui.SavedImages:
    """One on-node preview of several IMAGE batches (their sizes may differ), saved to ComfyUI's temp folder.
    None batches are skipped."""
    saved = []
    for images in batches:
        if images is not None:
            saved += ui.PreviewImage(images, cls=cls).values
    return ui.SavedImages(saved)


def with_progress(items: Iterable[T]) -> Iterator[T]:
    """Yield the items while ComfyUI's progress bar on the running node follows them."""
    import comfy.utils

    items = list(items)
    bar = comfy.utils.ProgressBar(len(items))
    for item in items:
        yield item
        bar.update(1)


def no_face_note(faces, what: str) -> str | None:
    """What an identity node says when some (or all) of its face entries had no face (Face Analysis with
    no_face = pass_through); None when every entry has a face."""
    missing = faces.missing
    if not missing:
        return None
    numbers = ", ".join(str(i + 1) for i in missing)
    if len(missing) == len(faces):
        return f"No face in any input image ({numbers}): {what} is off (weight 0) for this run."
    return f"No face in image(s) {numbers}: {what} uses the other {len(faces) - len(missing)} face(s)."


def with_note(ui_output, note: str | None):
    """An on-node ui output with a text line added (also logged), or the ui output as it is."""
    if note is None:
        return ui_output
    import logging

    logging.warning("[Infuse] %s", note)
    shown = ui_output.as_dict() if ui_output is not None else {}
    return {**shown, "text": [note]}
