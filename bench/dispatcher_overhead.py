"""Step time with the Infuse dispatcher installed vs plain sampling, on the same model, in one run.

    python bench/dispatcher_overhead.py                         # real-size SD1.5 UNet, random weights
    python bench/dispatcher_overhead.py --model sdxl --latent 128 --dtype fp16   # on a GPU
"""
from harness import parser, run  # first: puts tests/ on sys.path, imports ComfyUI, loads the pack

from comfyui_infuse.mechanisms.patching import dispatcher
from comfyui_infuse.mechanisms.patching.surfaces.unet import model_sites


class ZeroWeight(dispatcher.Contribution):
    def delta(self, q, k, v, call):
        raise AssertionError("a zero-weight contribution is never computed")


def variants(model):
    empty = model.clone()
    for kind in dispatcher.ATTENTION_KINDS:
        dispatcher.install(empty, kind, model_sites(model))
    zero = model.clone()
    dispatcher.add_contribution(zero, ZeroWeight("bench", weight=0.0))
    return {"dispatcher, no contributions": empty, "dispatcher, one weight-0 contribution": zero}


if __name__ == "__main__":
    run(parser(__doc__).parse_args(), variants)
