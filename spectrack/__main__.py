"""``python -m spectrack``: the same command line as the ``spectrack`` script."""

from .cli import _entry

if __name__ == "__main__":
    _entry()
