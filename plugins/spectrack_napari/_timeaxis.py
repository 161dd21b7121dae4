"""The time slider of a spectrack study reads in hours after injection.

A time series is one 4-D layer whose first axis steps through the time
points (one step each, see :mod:`._layers`); the slider would show only the
step number. :func:`follow_time_axis` labels that slider with the scan time of
the current step (``"2.00 h after injection"``) and keeps the label up to date
as the slider moves and layers come and go (napari resets axis labels when a
layer is added).
"""

from __future__ import annotations

import math
import weakref

from ._layers import METADATA_KEY

__all__ = ["follow_time_axis", "follow_current_viewer", "time_axis_label", "study_times_h"]

# viewers whose time slider is already followed (the quantify and curve docks both ask)
_FOLLOWED: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def time_axis_label(times_h, step: int) -> str | None:
    """The label of the time slider at ``step`` (None when ``times_h`` says nothing)."""
    if not times_h:
        return None
    if not 0 <= step < len(times_h):
        return None
    t = times_h[step]
    if t is None or not math.isfinite(float(t)):
        return "time (scan time not known)"
    return f"{float(t):.2f} h after injection"


def study_times_h(viewer):
    """Scan times (h after injection) of the study shown: the active layer's, else the newest study's."""
    def times(layer):
        entry = (getattr(layer, "metadata", None) or {}).get(METADATA_KEY) or {}
        t = entry.get("times_h")
        return t if t and getattr(layer, "ndim", 0) == 4 and len(t) > 1 else None

    active = viewer.layers.selection.active
    if active is not None and times(active):
        return times(active)
    for layer in reversed(list(viewer.layers)):
        if times(layer):
            return times(layer)
    return None


def follow_time_axis(viewer) -> None:
    """Label the viewer's time slider in hours after injection (once per viewer)."""
    if _FOLLOWED.get(id(viewer)) is viewer:
        return
    _FOLLOWED[id(viewer)] = viewer
    ref = weakref.ref(viewer)

    def update(event=None):
        v = ref()
        if v is None or v.dims.ndim < 4:
            return
        label = time_axis_label(study_times_h(v), int(v.dims.current_step[0]))
        labels = list(v.dims.axis_labels)
        if label is not None and labels[0] != label:
            labels[0] = label
            v.dims.axis_labels = labels

    viewer.dims.events.current_step.connect(update)
    viewer.dims.events.ndim.connect(update)
    # after napari's own handlers, which reset the labels from the layers
    viewer.layers.events.inserted.connect(update, position="last")
    viewer.layers.events.removed.connect(update, position="last")
    viewer.layers.selection.events.active.connect(update)
    update()


def follow_current_viewer() -> None:
    """:func:`follow_time_axis` for the viewer a reader or sample runs in (none outside napari)."""
    try:
        import napari
    except ImportError:  # the conversions used without napari
        return
    viewer = napari.current_viewer()
    if viewer is not None:
        follow_time_axis(viewer)
