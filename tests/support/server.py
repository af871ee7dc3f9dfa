"""A real ComfyUI server for end-to-end tests: started from ComfyUI's main.py on 127.0.0.1, with this pack
linked into its custom_nodes, models in a temporary folder given through --extra-model-paths-config.
Every wait is bounded; the server is stopped by its PID."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from .comfy_env import PACK_ROOT, find_comfyui

# test-only custom node files every e2e server gets: the tiny model configs, the Flux text stand-in
PLUGINS = tuple(PACK_ROOT / "tests" / "e2e" / "server_plugins" / name
                for name in ("infuse_test_models.py", "infuse_test_flux_text.py"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer:
    def __init__(self, workdir: Path, model_folders: dict[str, Path]):
        self.root = find_comfyui()
        self.workdir = Path(workdir)
        self.base = self.workdir / "base"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.workdir / "server.log"
        self.proc: subprocess.Popen | None = None
        self.client_id = uuid.uuid4().hex
        custom_nodes = self.base / "custom_nodes"
        custom_nodes.mkdir(parents=True, exist_ok=True)
        (custom_nodes / "ComfyUI-Infuse").symlink_to(PACK_ROOT, target_is_directory=True)
        for plugin in PLUGINS:
            (custom_nodes / plugin.name).symlink_to(plugin)
        for sub in ("input", "output", "user", "models"):
            (self.base / sub).mkdir(exist_ok=True)
        self.extra_paths = self.workdir / "extra_model_paths.yaml"
        lines = ["infuse_tests:", f"    base_path: {self.workdir}"]
        lines += [f"    {name}: {path}" for name, path in model_folders.items()]
        self.extra_paths.write_text("\n".join(lines) + "\n")

    # --- lifecycle ----------------------------------------------------------------------------------
    def start(self, timeout: float = 240.0) -> "ComfyServer":
        import torch

        cmd = [sys.executable, "main.py", "--listen", "127.0.0.1", "--port", str(self.port),
               "--base-directory", str(self.base), "--extra-model-paths-config", str(self.extra_paths),
               "--disable-metadata"]
        if not torch.cuda.is_available():
            cmd.append("--cpu")
        env = dict(os.environ, INFUSE_TESTS_DIR=str(PACK_ROOT / "tests"), PYTHONUNBUFFERED="1")
        self.log_file = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, cwd=self.root, stdout=self.log_file, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                self.get("/system_stats", timeout=2)
                return self
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"ComfyUI did not answer within {timeout}s:\n{self.log()[-4000:]}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=20)
        self.log_file.close()

    def alive(self) -> bool:
        try:
            return self.get("/system_stats", timeout=5) is not None
        except (urllib.error.URLError, OSError):
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # --- HTTP ---------------------------------------------------------------------------------------
    def _request(self, path: str, data: bytes | None = None, timeout: float = 30):
        req = urllib.request.Request(self.url + path, data=data,
                                     headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def get(self, path: str, timeout: float = 30):
        status, body = self._request(path, timeout=timeout)
        if status != 200:
            raise urllib.error.URLError(f"GET {path} -> {status}: {body}")
        return body

    def queue(self, workflow: dict) -> tuple[int, dict]:
        """POST /prompt; returns (HTTP status, body): 200 with prompt_id, or 400 with node_errors."""
        return self._request("/prompt", json.dumps({"prompt": workflow, "client_id": self.client_id}).encode())

    def wait(self, prompt_id: str, timeout: float = 420.0) -> dict:
        """The /history entry of a prompt once it finished (success or error)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            history = self.get(f"/history/{prompt_id}")
            entry = history.get(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None and (
                    entry["status"]["completed"] or entry["status"].get("status_str") == "error"):
                return entry
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI died while running {prompt_id}:\n{self.log()[-4000:]}")
            time.sleep(0.25)
        raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout}s")

    def run(self, workflow: dict, timeout: float = 420.0) -> dict:
        status, body = self.queue(workflow)
        assert status == 200, f"/prompt refused the workflow: {json.dumps(body, indent=1)[:3000]}"
        return self.wait(body["prompt_id"], timeout)

    def output_file(self, image: dict) -> Path:
        return self.base / image.get("type", "output") / image.get("subfolder", "") / image["filename"]

    def saved_images(self, entry: dict) -> list[Path]:
        """The files of every image a finished prompt's output nodes wrote (Save Image, previews)."""
        return [self.output_file(img) for out in entry["outputs"].values() for img in out.get("images", [])]


def execution_error(entry: dict) -> dict | None:
    """The execution_error message of a history entry, if the prompt failed."""
    for kind, data in entry.get("status", {}).get("messages", []):
        if kind == "execution_error":
            return data
    return None


def assert_named_fault(server: ComfyServer, workflow: dict, node: str, input_name: str, says: str) -> None:
    """The workflow fails with an InfuseError that starts with the node's name and the input, says `says` and the
    fix, and the server goes on."""
    error = execution_error(server.run(workflow, timeout=300))
    assert error is not None and error["exception_type"].endswith("InfuseError"), error
    message = error["exception_message"]
    assert message.startswith(f"{node}, input '{input_name}': ") and says in message and " Fix: " in message, message
    assert server.alive()


def cleanup(workdir: Path) -> None:
    shutil.rmtree(workdir, ignore_errors=True)
