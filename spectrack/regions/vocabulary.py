"""The one region vocabulary of spectrack.

Automatic segmentation, the phantom and the importers (TotalSegmentator,
DICOM-SEG, RTSTRUCT) all map to these names. Users may bring any other names;
these are the ones spectrack itself produces. Index values are the defaults
used when spectrack writes a label map.

=====  =======================  ==============================================
index  name                     meaning
=====  =======================  ==============================================
1      brain                    brain parenchyma; with intracranial CSF when
                                no ``csf_intracranial`` region is present
2      canal_cervical           spinal canal (cord + CSF), cervical levels
3      canal_thoracic           spinal canal, thoracic levels
4      canal_lumbar             spinal canal, lumbar levels
5      canal_sacral             spinal canal, sacral levels
6      injection_site           lumbar puncture site outside the canal
7      liver                    liver
8      kidneys                  both kidneys
9      bladder                  urinary bladder (urine)
10     thyroid                  thyroid (free pertechnetate check)
11     stomach                  stomach (free pertechnetate check)
12     salivary_glands          parotid + submandibular glands (pertechnetate)
13     lymph_nodes              lymph nodes (ASO clearance route)
14     skull                    skull bone (CT anatomy)
15     vertebrae                vertebral column bone (CT anatomy)
16     remainder                rest of the body outline
17     csf_intracranial         CSF-density space inside the skull: ventricles,
                                basal cisterns and cisterna magna
=====  =======================  ==============================================

``csf_intracranial`` is only labelled where the CT separates CSF from brain
tissue (automatic regions) or when the phantom is asked for it
(``make_phantom(..., intracranial_csf=True)``); otherwise ``brain`` holds the
intracranial CSF, as before.

Groups (:data:`GROUPS`) are reported only when every member is present:
``spinal_canal`` (the four canal levels), ``cns`` (``brain`` and the canal
levels; when ``csf_intracranial`` is present ``brain`` is parenchyma only, so
the whole neuraxis is ``cns`` plus ``csf_intracranial``) and ``csf_space``
(``csf_intracranial`` and the four canal levels: the CSF space, reported only
when the intracranial CSF is its own region).
"""

from __future__ import annotations

__all__ = ["VOCABULARY", "INDEX", "GROUPS", "CANAL_LEVELS"]

VOCABULARY: dict[int, str] = {
    1: "brain",
    2: "canal_cervical",
    3: "canal_thoracic",
    4: "canal_lumbar",
    5: "canal_sacral",
    6: "injection_site",
    7: "liver",
    8: "kidneys",
    9: "bladder",
    10: "thyroid",
    11: "stomach",
    12: "salivary_glands",
    13: "lymph_nodes",
    14: "skull",
    15: "vertebrae",
    16: "remainder",
    17: "csf_intracranial",
}

#: name -> default index
INDEX: dict[str, int] = {v: k for k, v in VOCABULARY.items()}

CANAL_LEVELS = ("canal_cervical", "canal_thoracic", "canal_lumbar", "canal_sacral")

#: Named groups of regions reported in addition to the regions themselves.
GROUPS: dict[str, tuple[str, ...]] = {
    "spinal_canal": CANAL_LEVELS,
    "cns": ("brain",) + CANAL_LEVELS,
    "csf_space": ("csf_intracranial",) + CANAL_LEVELS,
}
