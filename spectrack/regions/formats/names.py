"""Region names stored beside or inside a label image, as other tools write them.

=============================================  ==========================================
where the names are                            read by
=============================================  ==========================================
``<stem>.tsv`` (``index<TAB>name``)            :func:`read_names`
``<stem>.json`` (``{"1": "brain"}``)           :func:`read_names`
ITK-SNAP label description file (``.txt``)     :func:`read_itksnap_labels`
NIfTI header extension label table (the        :func:`names_from_nifti_extensions`
Caret/GIFTI ``LabelTable`` XML that
TotalSegmentator ``--ml`` writes)
=============================================  ==========================================
"""

from __future__ import annotations

import csv
import json
import re
import shlex
import xml.etree.ElementTree as ET
from pathlib import Path

from ...errors import InputError, LabelError
from ...io_utils import nifti_stem

__all__ = ["read_itksnap_labels", "looks_like_itksnap", "names_from_nifti_extensions", "parse_label_table_xml",
           "names_sidecar", "read_names", "read_names_text"]

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


# ------------------------------------------------------------------ names files beside a label image
def names_sidecar(path) -> Path | None:
    """The names file beside a label image: ``<stem>.tsv``, ``<stem>.json`` or ``<stem>.txt`` (ITK-SNAP), else ``None``."""
    path = Path(path)
    for ext in (".tsv", ".json", ".txt"):
        cand = path.with_name(nifti_stem(path) + ext)
        if cand.exists():
            return cand
    return None


def read_names(path: Path) -> dict[int, str]:
    """Read ``{index: name}`` from a TSV (``index<TAB>name``), JSON or ITK-SNAP label file.

    The TSV may have a header line and extra columns; lines starting with
    ``#`` are ignored. The JSON is an object ``{"1": "brain"}`` or a list of
    ``{"index": 1, "name": "brain"}``. An ITK-SNAP label description file
    (``IDX R G B A VIS MSH "LABEL"`` lines) is recognised by its content
    (see :func:`spectrack.regions.formats.names.read_itksnap_labels`).
    """
    from .names import looks_like_itksnap, read_itksnap_labels

    path = Path(path)
    text = read_names_text(path)
    if looks_like_itksnap(text):
        return read_itksnap_labels(path)
    names: dict[int, str] = {}

    def put(key, name, where):
        if key in names and names[key] != name:
            raise LabelError(f"label names {path}{where}: label {key} is named twice ({names[key]!r} and "
                             f"{name!r}): keep one name per label value")
        names[key] = name

    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text, object_pairs_hook=list)  # pairs in file order: a key given twice is seen
        except json.JSONDecodeError as e:
            raise LabelError(f"label names {path} is not valid JSON (line {e.lineno}): fix the file") from None
        if isinstance(data, list) and data and all(isinstance(p, tuple) for p in data):
            items = data  # an object {"1": "brain"}: its (key, value) pairs
        elif isinstance(data, list) and all(isinstance(d, list) and all(isinstance(p, tuple) for p in d)
                                            for d in data):
            items = []  # a list of objects {"index": 1, "name": "brain"}
            for n, d in enumerate(data):
                item = dict(d)
                if "index" not in item or "name" not in item:
                    raise LabelError(f"label names {path}: item {n + 1} of the list has no 'index' and 'name': "
                                     "give [{\"index\": 1, \"name\": \"brain\"}, ...]")
                items.append((item["index"], item["name"]))
        else:
            raise LabelError(f"label names {path}: expected a JSON object {{\"1\": \"brain\"}} or a list of "
                             "{\"index\": 1, \"name\": \"brain\"}, not this JSON value")
        for k, v in items:
            key = _integer_key(k)
            if key is None:
                raise LabelError(f"label names {path}: key {k!r} is not an integer index")
            if not isinstance(v, str):
                raise LabelError(f"label names {path}: the name of label {key} is not text ({json.dumps(v)[:40]}): "
                                 "give each name as a string")
            put(key, v, "")
        return names
    rows = [r for r in csv.reader(text.splitlines(), delimiter="\t") if r and not r[0].startswith("#")]
    for n, row in enumerate(rows):
        if len(row) < 2:
            raise LabelError(f"label names {path} line {n + 1}: expected 'index<TAB>name'")
        idx = _integer_key(row[0])
        if idx is None:
            if n == 0 and not _looks_numeric(row[0]):
                continue  # header
            raise LabelError(f"label names {path} line {n + 1}: {row[0]!r} is not an integer index") from None
        put(idx, row[1].strip(), f" line {n + 1}")
    return names


def read_names_text(path: Path, what: str = "label names") -> str:
    """The text of a names file, UTF-8 (an optional byte-order mark); anything else is one-line error."""
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise InputError(f"cannot read {what} {path}: {e.strerror}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise LabelError(f"{what} {path} is not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}): save it "
                         "as UTF-8") from None


def _integer_key(key) -> int | None:
    """A label index from a names-file key: an int, or text of an integer (``"7"``, ``" 7 "``); else None."""
    if isinstance(key, bool):
        return None
    if isinstance(key, int):
        return key
    if isinstance(key, str):
        t = key.strip()
        if t and (t.isdigit() or (t[0] in "+-" and t[1:].isdigit())) and t.isascii():
            return int(t)
    return None


def _looks_numeric(text: str) -> bool:
    """True for text a reader would take as a number (``1.5``, ``1e0``, ``nan``, ``0x2``): not a header."""
    t = text.strip()
    try:
        float(t)
        return True
    except ValueError:
        pass
    try:
        int(t, 0)
        return True
    except ValueError:
        return False
