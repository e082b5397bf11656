"""The compile server: a child process that compiles kernels for its parent, one request at a time.

Compiling runs Inductor, whose tracing patches ``torch.nn.Module.__call__`` process-wide and whose
dynamo rewinds the global random generator: neither may happen beside a training loop, so the parent
never compiles in the background itself. It traces each kernel on its own thread (milliseconds),
writes the graph to a file and sends a request line; this process compiles the graph into an
artifact (:func:`actplug.kernels.build.compile_graph`) in the cache folder both share, and answers.

Protocol, one JSON object per line. Request: ``{"id", "graph": path, "signature", "hints", "device",
"threads", "out": path}``. Answer: ``{"id", "ok": true, "seconds"}`` or ``{"id", "ok": false,
"error"}``. An artifact already at ``out`` is loaded, which also puts its compiled code into this
machine's Inductor cache, where the parent's load finds it. The process ends when its input closes.
"""

from __future__ import annotations

import fcntl
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any


def handle(request: dict[str, Any]) -> dict[str, Any]:
    """Compile (or check) one kernel; the answer line's content."""
    import torch

    from . import build

    started = time.perf_counter()
    out = Path(request["out"])
    signature = build.Signature(tuple(build.Arg.from_json(a) for a in request["signature"]))
    torch.set_num_threads(int(request["threads"]))
    lock_path = out.with_name(out.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process compiling the same kernel: wait for it
        if out.exists():
            try:
                build.load(out)
                return {"id": request["id"], "ok": True, "seconds": time.perf_counter() - started, "cached": True}
            except Exception:  # written by another PyTorch, say: compile it again
                out.unlink(missing_ok=True)
        graph = build.graph_from_bytes(Path(request["graph"]))
        build.compile_graph(graph, signature, request["hints"], request["device"], out)
    return {"id": request["id"], "ok": True, "seconds": time.perf_counter() - started, "cached": False}


def main() -> int:
    from . import build

    build.preload()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        try:
            answer = handle(request)
        except Exception as exc:
            text = str(exc).strip().splitlines()
            answer = {
                "id": request.get("id"),
                "ok": False,
                "error": f"{type(exc).__name__}: {text[0] if text else ''}",
                "traceback": traceback.format_exc()[-4000:],
            }
        print(json.dumps(answer), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
