"""Region files by format: each module reads (and, where spectrack writes the format, writes) one kind of file.

* :mod:`.dispatch`: :func:`~.dispatch.read_regions`, the one entry point for ``--labels``, picks the reader;
* :mod:`.nifti`: NIfTI label maps (and the SimpleITK formats through :mod:`.itk`);
* :mod:`.itk`: NRRD, MetaImage and 3D Slicer ``.seg.nrrd`` segmentations;
* :mod:`.names`: region names files (``.tsv``, ``.json``, ITK-SNAP ``.txt``, label tables in NIfTI extensions);
* :mod:`.dicomseg`: DICOM Segmentation (BINARY, FRACTIONAL, Label Map), read and written;
* :mod:`.rtstruct`: DICOM RT Structure Sets, rasterised onto the reference CT, read and written;
* :mod:`.totalseg`: TotalSegmentator output and its class names mapped onto the spectrack vocabulary.

Every reader returns a :class:`~spectrack.regions.labelmap.LabelMap`.
"""
