"""Load on a real server: 50 prompts with an Infuse IP-Adapter queued at once all complete with their image, and
the server's resident memory does not grow over 20 runs that each build new Infuse patches."""
from __future__ import annotations

import os
import time

import pytest

from support import faults_files
from support.comfy_env import PACK_ROOT
from support.workflow_edits import edit, ipadapter_from_embeds_file
from support.server import ComfyServer, execution_error
from test_server import shipped_workflow

pytestmark = pytest.mark.e2e

EMBEDS_FILE = "load/image_embeds.safetensors"
PROBE = PACK_ROOT / "tests" / "e2e" / "server_plugins" / "live_objects.py"


def write_embeds(srv: ComfyServer) -> None:
    faults_files.embeds_file(srv.base / "input" / EMBEDS_FILE, faults_files.image_embeds())


def ipadapter_run(seed: int, weight: float = 0.8, prefix: str = "infuse_load") -> dict:
    """Tiny SD1.5 + Infuse IP-Adapter (embeds from a file), 64 px, 2 steps; the seed makes every prompt new."""
    wf = ipadapter_from_embeds_file(shipped_workflow("ip_adapter", seed=seed), EMBEDS_FILE)
    edit(wf, "5", weight=weight)
    return edit(wf, "11", filename_prefix=prefix)


def pixels(path) -> bytes:
    from PIL import Image

    with Image.open(path) as img:
        assert img.size == (64, 64), f"{path.name} is {img.size[0]}x{img.size[1]}, the workflow asks for 64x64"
        return img.convert("RGB").tobytes()


def test_fifty_prompts_queued_at_once_all_complete(server):
    """25 seeds, each queued twice (once in each half of the queue, other prompts in between): every prompt gives
    its 64x64 image, a seed's two images are the same pixel for pixel (no state left behind by the prompts run in
    between), and the 25 seeds give 25 different images."""
    write_embeds(server)
    seeds = [10_000 + i for i in range(25)] * 2
    started = time.monotonic()
    prompt_ids = []
    for i, seed in enumerate(seeds):                # every POST before any wait
        status, body = server.queue(ipadapter_run(seed=seed, prefix=f"infuse_load_{i // 25}"))
        assert status == 200 and not body["node_errors"], body
        prompt_ids.append(body["prompt_id"])
    images = []
    for prompt_id in prompt_ids:
        entry = server.wait(prompt_id, timeout=300)
        assert entry["status"]["status_str"] == "success", execution_error(entry) or entry["status"]
        files = server.saved_images(entry)
        assert len(files) == 1 and files[0].stat().st_size > 0
        images.append(pixels(files[0]))
    print(f"\n{len(prompt_ids)} queued prompts completed in {time.monotonic() - started:.1f} s")
    first, second = images[:25], images[25:]
    assert first == second, [seeds[i] for i in range(25) if first[i] != second[i]]
    assert len(set(first)) == 25
    assert server.alive()


@pytest.fixture(scope="module")
def quiet_server(tmp_path_factory, model_dirs):
    """A server of its own, so other tests' models and caches do not move its memory; with the probe that counts
    live patch objects."""
    srv = ComfyServer(tmp_path_factory.mktemp("comfy_memory"), model_dirs)
    (srv.base / "custom_nodes" / PROBE.name).symlink_to(PROBE)
    write_embeds(srv)
    srv.start()
    yield srv
    srv.stop()


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        kib = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return kib / 1024


def test_memory_stays_flat_over_twenty_runs_with_new_patches(quiet_server):
    """Each run changes the IP-Adapter weight and the seed, so the Infuse node builds a new patched model (clone,
    dispatchers, contribution, tokens) and the sampler really runs. RSS is read without forcing a collection
    after run 1 (models loaded, first allocations made) and after run 20; the live-object counts come after a
    gc.collect() in the server and show whether anything stays reachable."""
    srv = quiet_server
    rss, live = {}, {}
    for run in range(1, 21):
        entry = srv.run(ipadapter_run(seed=run, weight=0.5 + run / 100, prefix="infuse_memory"))
        assert entry["status"]["status_str"] == "success", execution_error(entry) or entry["status"]
        rss[run] = rss_mib(srv.proc.pid)
        if run in (1, 20):
            live[run] = srv.get("/infuse_test/live_objects")
    growth = 100 * (rss[20] - rss[1]) / rss[1]
    print(f"\nserver RSS after run 1: {rss[1]:.1f} MiB, after run 20: {rss[20]:.1f} MiB, growth {growth:+.2f}%"
          f"\nRSS per run (MiB): {' '.join(f'{rss[r]:.0f}' for r in sorted(rss))}"
          f"\nlive objects after run 1: {live[1]}\nlive objects after run 20: {live[20]}")
    assert rss[20] <= 1.05 * rss[1]
    assert live[20] == live[1]          # nothing from runs 2..19 is still reachable
    assert os.path.exists(f"/proc/{srv.proc.pid}") and srv.alive()
