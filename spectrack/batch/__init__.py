"""Batch quantification: many studies in parallel on Dask, one cohort table and report.

Start with :func:`run_batch` (the ``spectrack batch`` command calls it).
Each study runs :func:`spectrack.run_study` as one task on a
``dask.distributed`` cluster (an embedded ``LocalCluster`` of processes, or an
existing scheduler); a failing study never stops the others, and a re-run
skips studies whose inputs and settings are unchanged.
"""

from .run import BatchSummary, StudyOutcome, cache_key, run_batch, run_one
from .studies import BatchStudy, discover_studies, find_label_map, read_manifest, resolve_studies

__all__ = ["run_batch", "BatchSummary", "StudyOutcome", "BatchStudy", "read_manifest", "discover_studies",
           "find_label_map", "resolve_studies", "cache_key", "run_one"]
