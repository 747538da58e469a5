"""The first forward pass of a model whose code comes from its file, in a child process.

A TorchScript or torch.export model runs whatever its file says; a forward that never ends
would pin a core of the server for good. `dry_run` loads the same file in a child process
(with the same code-free loader), runs one batch there and waits at most `seconds` for it:
past that the child is killed and the model refused. Only a model that finished there runs in
the caller's process.

Run as `python -m workbench.io.sandbox MODEL KIND BATCH`: prints "loaded" once the model is in
memory, then runs the batch; the exit status is 0 whether the forward returned or raised (the
caller reports a Python error itself, from its own run).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from workbench.io.safety import LoadError, Source

#: Formats whose forward is code from the file (a pickled model's code ran when it was trusted).
SANDBOXED_FORMATS = ("export", "torchscript")
# Importing torch and loading the file: not part of the forward's time limit.
STARTUP_SECONDS = 180.0


class DryRunError(LoadError):
    """The model's first forward pass did not finish, or crashed its process."""


def dry_run(source: Source, kind: str, batch: torch.Tensor, seconds: float) -> None:
    """Run `batch` through the model in `source` in a child process; DryRunError if it fails."""
    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory(prefix="workbench-dry-run-") as folder:
        model_path = source.path
        if model_path is None:
            assert source.data is not None
            model_path = Path(folder) / "model"
            model_path.write_bytes(source.data)
        batch_path = Path(folder) / "batch.safetensors"
        save_file({"batch": batch.contiguous()}, str(batch_path))
        package_root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [package_root, *filter(None, [os.environ.get("PYTHONPATH")])]
        )}  # fmt: skip
        child = subprocess.Popen(
            [sys.executable, "-m", "workbench.io.sandbox", str(model_path), kind, str(batch_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # its own process group: killed whole
        )
        try:
            _wait(child, seconds, len(batch))
        finally:
            if child.poll() is None:
                _kill(child)
            assert child.stdout is not None
            child.stdout.close()


def _wait(child: subprocess.Popen[bytes], seconds: float, n: int) -> None:
    assert child.stdout is not None
    # The child says "loaded" before its forward pass; the time limit starts then.
    line = _readline(child, STARTUP_SECONDS)
    if line != b"loaded":
        code = child.wait(timeout=STARTUP_SECONDS)
        raise DryRunError(
            f"the model could not be loaded in a separate process for its dry run ({_status(code)})"
        )
    try:
        code = child.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        raise DryRunError(
            f"the model did not finish its first forward pass (a batch of {n}) in {seconds:g} s, "
            "so it was stopped and not loaded (does its forward loop for ever?). The server's "
            "operator sets this limit with WORKBENCH_DRY_RUN_SECONDS"
        ) from None
    if code != 0:
        raise DryRunError(f"the model's first forward pass crashed its process ({_status(code)})")


def _readline(child: subprocess.Popen[bytes], seconds: float) -> bytes:
    import selectors

    assert child.stdout is not None
    deadline = time.monotonic() + seconds
    with selectors.DefaultSelector() as selector:
        selector.register(child.stdout, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0:
            if selector.select(timeout=left):
                return child.stdout.readline().strip()
    return b""


def _kill(child: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        child.kill()
    child.wait()


def _status(code: int | None) -> str:
    if code is None:
        return "it did not exit"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def _main(argv: list[str]) -> int:
    from safetensors.torch import load_file

    from workbench.io.models import load_model

    model_path, kind, batch_path = argv
    torch.set_num_threads(1)  # one core of the server at most
    loaded = load_model(model_path, kind=kind)
    batch = load_file(batch_path)["batch"]
    print("loaded", flush=True)
    try:
        with torch.no_grad():
            loaded.model(batch)
    except Exception:  # noqa: BLE001 - the caller's own run reports the error
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
