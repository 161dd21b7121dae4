"""napari plugin of spectrack: open SPECT/CT studies, quantify %ID per region, plot time-activity curves.

The contributions are listed in ``napari.yaml`` (npe2). This package imports
napari and Qt; the core package :mod:`spectrack` never does.
"""

from spectrack._version import __version__

__all__ = ["__version__"]
