"""Region names stored beside or inside a label image, as other tools write them.

=============================================  ==========================================
where the names are                            read by
=============================================  ==========================================
``<stem>.tsv`` (``index<TAB>name``)            :func:`spectrack.regions.labels.read_names`
``<stem>.json`` (``{"1": "brain"}``)           :func:`spectrack.regions.labels.read_names`
ITK-SNAP label description file (``.txt``)     :func:`read_itksnap_labels`
NIfTI header extension label table (the        :func:`names_from_nifti_extensions`
Caret/GIFTI ``LabelTable`` XML that
TotalSegmentator ``--ml`` writes)
=============================================  ==========================================
"""

from __future__ import annotations

import re
import shlex
import xml.etree.ElementTree as ET
from pathlib import Path

from ..errors import LabelError

__all__ = ["read_itksnap_labels", "looks_like_itksnap", "names_from_nifti_extensions", "parse_label_table_xml"]

#: ITK-SNAP's background entry: not a region.
_ITKSNAP_BACKGROUND = {"clear label"}
_ITKSNAP_LINE = re.compile(r'^\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+([0-9.]+)\s+(\d)\s+(\d)\s+"(.*)"\s*$')


def looks_like_itksnap(text: str) -> bool:
    """True when ``text`` is an ITK-SNAP label description file.

    Examples
    --------
    >>> looks_like_itksnap('# ITK-SnAP Label Description File\\n  1  255 0 0  1 1 1 "Liver"\\n')
    True
    >>> looks_like_itksnap('index\\tname\\n1\\tliver\\n')
    False
    """
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    return bool(lines) and all(_ITKSNAP_LINE.match(ln) for ln in lines)


def read_itksnap_labels(path) -> dict[int, str]:
    """Read an ITK-SNAP label description file: ``{index: name}``.

    Each line is ``IDX R G B A VIS MSH "LABEL"``; ``#`` lines are comments and
    index 0 (``"Clear Label"``) is the background.

    Parameters
    ----------
    path : path-like
        The ``.txt`` file (ITK-SNAP *Segmentation > Export Label Descriptions*).

    Raises
    ------
    LabelError
        On a line that is not in the format.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "labels.txt"
    >>> _ = p.write_text('    0     0    0    0        0  0  0    "Clear Label"\\n'
    ...                  '    7   255    0    0        1  1  1    "Liver"\\n')
    >>> read_itksnap_labels(p)
    {7: 'Liver'}
    """
    from .labels import read_names_text

    path = Path(path)
    text = read_names_text(path, "label descriptions")
    names: dict[int, str] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _ITKSNAP_LINE.match(line)
        if m is None:
            try:
                fields = shlex.split(line)
            except ValueError:
                fields = []
            if len(fields) != 8 or not fields[0].isdigit():
                raise LabelError(f"ITK-SNAP label descriptions {path} line {n}: expected "
                                 "'IDX R G B A VIS MSH \"LABEL\"'")
            idx, label = int(fields[0]), fields[7]
        else:
            idx, label = int(m.group(1)), m.group(8)
        if idx == 0 or label.strip().lower() in _ITKSNAP_BACKGROUND:
            continue
        if idx in names and names[idx] != label.strip():
            raise LabelError(f"ITK-SNAP label descriptions {path} line {n}: label {idx} is named twice "
                             f"({names[idx]!r} and {label.strip()!r}): keep one name per label value")
        names[idx] = label.strip()
    return names


def parse_label_table_xml(text: str) -> dict[int, str] | None:
    """``{key: name}`` of a Caret/GIFTI ``LabelTable`` XML, or ``None`` if there is none.

    Key 0 is the background (``???``, ``Exterior``, ``background``) and left out.

    Examples
    --------
    >>> parse_label_table_xml('<CaretExtension><VolumeInformation><LabelTable>'
    ...     '<Label Key="0"><![CDATA[Exterior]]></Label><Label Key="5"><![CDATA[liver]]></Label>'
    ...     '</LabelTable></VolumeInformation></CaretExtension>')
    {5: 'liver'}
    """
    text = text.strip().strip("\x00").strip()
    if "<LabelTable" not in text:
        return None
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        return None
    names: dict[int, str] = {}
    for table in root.iter("LabelTable"):
        for lab in table.iter("Label"):
            try:
                key = int(lab.get("Key", ""))
            except ValueError:
                continue
            if key != 0 and (lab.text or "").strip():
                names[key] = lab.text.strip()
    return names


def names_from_nifti_extensions(header) -> dict[int, str] | None:
    """Region names from a NIfTI header extension holding a label table.

    TotalSegmentator's multilabel output (``--ml``) stores its class names
    this way (a Caret ``LabelTable`` XML in an extension); so do Connectome
    Workbench label volumes. Every extension is looked at, whatever its code.

    Parameters
    ----------
    header : nibabel.Nifti1Header

    Returns
    -------
    dict of int to str or None
        ``None`` when no extension holds a label table.
    """
    for ext in getattr(header, "extensions", []) or []:
        try:
            raw = ext.get_content()
        except Exception:  # an extension nibabel cannot decode is not a label table
            continue
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8", errors="replace")
        if not isinstance(raw, str):
            continue
        names = parse_label_table_xml(raw)
        if names:
            return names
    return None
