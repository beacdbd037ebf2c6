"""Native libraries write below Python, to the process's file descriptors 1 and 2 (TensorFlow's
CUDA probe at import, the TFLite quantizer's settings lines): park them unless --verbose."""

from __future__ import annotations

import os
import sys
import tempfile
from contextlib import contextmanager

PARKING = {"on": False}  # the CLI turns it on; library calls and tests see native output as is


@contextmanager
def native_output_parked():
    """Send fds 1 and 2 to a scratch file for the block; if the block raises, replay what was
    written to stderr (a native error message is never lost), then re-raise."""
    if not PARKING["on"]:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    with tempfile.TemporaryFile() as sink:
        failed = False
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            yield
        except BaseException:
            failed = True
            raise
        finally:
            for fd, copy in zip((1, 2), saved):
                os.dup2(copy, fd)
                os.close(copy)
            if failed:
                sink.seek(0)
                sys.stderr.write(sink.read().decode(errors="replace"))
                sys.stderr.flush()
