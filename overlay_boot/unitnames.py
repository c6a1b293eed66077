"""Old name of `unitfile`."""

from .unitfile import *  # noqa: F403 - old name until the merge (generator.py imports it)
