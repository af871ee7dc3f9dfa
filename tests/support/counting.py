"""Count how often an apply reads a UNet's family and walks its sites (surfaces/unet.py's own functions)."""


def count_unet_reads(monkeypatch) -> dict:
    """Counters, updated from now on, of `model_family` and `discover_sites` calls through surfaces/unet.py."""
    from comfyui_infuse.mechanisms.patching.surfaces import unet

    counts = {"model_family": 0, "discover_sites": 0}
    for name in counts:
        def counted(*a, _f=getattr(unet, name), _n=name):
            counts[_n] += 1
            return _f(*a)
        monkeypatch.setattr(unet, name, counted)
    return counts
