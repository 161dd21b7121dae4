"""``python -m spectrack.cli``: the same command line as the ``spectrack`` script."""

from .root import _entry

if __name__ == "__main__":
    _entry()
