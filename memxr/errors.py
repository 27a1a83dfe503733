"""Errors for bad input: one line naming the file and the field.

Examples
--------
>>> raise InputError("sub-01_ResponseData.h5", "ResponseData/block0_values", "no such dataset")
Traceback (most recent call last):
...
memxr.errors.InputError: sub-01_ResponseData.h5: ResponseData/block0_values: no such dataset
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["InputError"]


class InputError(ValueError):
    """A raw input file is unreadable or inconsistent.

    Parameters
    ----------
    file : str or path
        The offending file (only its name is shown, never a long absolute path).
    field : str
        The dataset, column, key or option at fault.
    message : str
        What is wrong, on one line.
    """

    def __init__(self, file: str | os.PathLike, field: str, message: str):
        self.file = Path(file).name if str(file) else ""
        self.field = field
        self.message = " ".join(str(message).split())
        super().__init__(f"{self.file}: {field}: {self.message}")
