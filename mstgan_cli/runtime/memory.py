"""Keep freed memory in the process instead of handing it back to the kernel after every frame.

glibc's malloc serves every block over its mmap threshold (at most 32 MiB) with a fresh ``mmap``
and returns it with ``munmap`` on free. The CPU runtime allocates and frees the same large
buffers for every frame (a (4, 32, 272, 480) fp32 feature batch is 67 MB; PyTorch's CPU
allocator does not cache), so every frame page-faults all of them in again and the kernel zeroes
each page: measured on the 2-core CPU, 40 frames of 480x272 x4 spent 8.5 s of system time in int8
and 19 s in fp32 eager, and took 14-18 % longer than with the setting below
(``benchmarks/RESULTS.md``).

:func:`keep_freed_memory` tells glibc to serve large blocks from its heap too and never to trim
it, so freed buffers are reused by the next frame. The peak resident memory is unchanged (the same
buffers are live at the peak); what changes is that it is not returned to the kernel between
frames. It changes the whole process, so the library calls it only when asked
(``RuntimeTuning(keep_freed_memory=True)``, which the ``mstgan`` command gives on the CPU; its hidden
``--release-freed-memory`` leaves malloc alone); on a C library without ``mallopt`` (musl,
macOS, Windows) it does nothing.
"""
from __future__ import annotations

import ctypes
import logging
import sys

log = logging.getLogger("mstgan_cli")

# glibc's <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4

_state: bool | None = None


def keep_freed_memory() -> bool:
    """Apply the setting (once per process); True when it is in effect."""
    global _state
    if _state is not None:
        return _state
    _state = False
    if not sys.platform.startswith("linux"):
        return _state
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return _state
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # (glibc returns 1 on success; musl's stub returns 0)
    _state = mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, 2**31 - 1) == 1
    log.debug("memory: keep freed memory in the process: %s", _state)
    return _state
