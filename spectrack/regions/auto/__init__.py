"""Automatic regions from CT (and SPECT) for the rat, NHP and human presets.

* :mod:`.ct`: :func:`~.ct.segment_ct` and :func:`~.ct.segment_study`, the entry points (body, canal, brain,
  skull, vertebrae, organs, injection site, painted into one label map);
* :mod:`.canal`: the spinal canal traced along its centreline and split into levels, and the millimetre
  morphology the other steps share;
* :mod:`.organs`: the presets' priors and HU windows, body outline, brain and skull, intracranial CSF, organs by
  density window and position, the injection site;
* :mod:`.vertebrae`: vertebrae counted along the canal, for the level boundaries;
* :mod:`.spect`: regions from SPECT alone, when a study has no CT.
"""
