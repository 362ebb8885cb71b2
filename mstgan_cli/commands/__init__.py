"""Commands that measure: ``mstgan eval``, ``mstgan bench``, ``mstgan compare``.

Each module holds one Typer command function and its help; :func:`register` adds them to the app
(cli.py calls it once), so the commands' options and examples live next to each other.
"""
from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add eval, bench and compare to ``app``."""
    from .bench import BENCH_EPILOG, bench_cmd
    from .compare import COMPARE_EPILOG, compare_cmd
    from .eval import EVAL_EPILOG, eval_cmd

    app.command("eval", epilog=EVAL_EPILOG, no_args_is_help=True)(eval_cmd)
    app.command("bench", epilog=BENCH_EPILOG)(bench_cmd)
    app.command("compare", epilog=COMPARE_EPILOG, no_args_is_help=True)(compare_cmd)


__all__ = ["register"]
