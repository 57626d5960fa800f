"""Progress bars for long loops. In Jupyter a widget; under batch runs (`SAIE_PROGRESS=text`, set by
`make demo` / `make reproduce`) plain text lines at most every `SAIE_PROGRESS_INTERVAL` seconds, which papermill
streams to the terminal (`--log-output`) and which stay small and readable in the executed notebook. `warn`: one
line on stderr for something the reader must see (a recovery, a run that produced nothing usable)."""

from __future__ import annotations

import os
import sys
from typing import Any

PROGRESS_ENV = "SAIE_PROGRESS"
INTERVAL_ENV = "SAIE_PROGRESS_INTERVAL"


def progress_bar(iterable: Any = None, **options: Any):
    """A tqdm bar: text under batch runs, the notebook widget or terminal bar otherwise."""
    if os.environ.get(PROGRESS_ENV) == "text":
        from tqdm.std import tqdm

        interval = float(os.environ.get(INTERVAL_ENV) or 30)
        return tqdm(iterable, file=sys.stderr, mininterval=interval, maxinterval=interval, ascii=True, **options)
    from tqdm.auto import tqdm

    return tqdm(iterable, **options)


def warn(message: str) -> None:
    """`WARNING: <message>` as one line on stderr: shown in the notebook's output and in batch logs."""
    print(f"WARNING: {' '.join(message.split())}", file=sys.stderr, flush=True)
