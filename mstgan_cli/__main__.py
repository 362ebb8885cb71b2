"""``python -m mstgan_cli``: the same as the ``mstgan`` command."""
from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    main()
