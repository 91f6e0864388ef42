"""Import TensorFlow without the GPU-probe noise of a machine that has no GPU.

TensorFlow 2.21 writes, from C++ and before Python can configure any logger, on every machine
without an NVIDIA driver:

    I0000 ... cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
    E0000 ... cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: ... UNKNOWN ERROR (303)

(the first at import, the second when the devices are first listed). `TF_CPP_MIN_LOG_LEVEL=2`
hides neither, `=3` hides every TensorFlow error, and `CUDA_VISIBLE_DEVICES` does not stop the
probe (all measured). So the CLI imports TensorFlow once, with file descriptor 2 caught, lists
the devices, and writes back every caught line except these known ones. It does so only where
no NVIDIA device node exists: on a GPU machine a failed cuInit is a real fault and stays visible.
"""

from __future__ import annotations

import glob
import os
import re
import sys
import tempfile

# The lines a GPU-less machine prints for nothing; any other line is passed through.
NOISE = (
    re.compile(r"cudart_stub\.cc:\d+\] Could not find cuda drivers on your machine"),
    re.compile(r"cuda_platform\.cc:\d+\] failed call to cuInit"),
    re.compile(r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"),
    # An INFO line that TF_CPP_MIN_LOG_LEVEL=2 is meant to hide, printed anyway because TF 2.21
    # logs it before absl is initialised (on CPUs whose oneDNN kernels it enables: measured on an
    # AVX-512 host, twice per import); it says nothing a run needs.
    re.compile(r"port\.cc:\d+\] oneDNN custom operations are on"),
)


def has_gpu_device_node() -> bool:
    """True when the kernel exposes an NVIDIA device (/dev/nvidia0, ...): a GPU may be usable."""
    return bool(glob.glob("/dev/nvidia[0-9]*"))


def import_tensorflow() -> None:
    """Import TensorFlow and list its physical devices, dropping the no-GPU lines above.

    Logical devices are not initialised here, so `configure_cpu_replicas` still works after it.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's INFO/WARNING lines (CPU features...)
    if "tensorflow" in sys.modules or has_gpu_device_node():
        import tensorflow as tf

        tf.config.list_physical_devices()
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            lines = caught.read().decode(errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines
                                     if not any(p.search(line) for p in NOISE)))
            sys.stderr.flush()
