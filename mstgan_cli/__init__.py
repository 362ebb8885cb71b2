"""mstgan: multi-frame video super-resolution (MST-GAN) streamed through FFmpeg."""
from __future__ import annotations

import logging

__version__ = "0.1.0"

logging.getLogger("mstgan_cli").addHandler(logging.NullHandler())
