"""The study report: one self-contained HTML page with its figures.

:func:`write_report` writes ``report.html`` and ``figures/*.png`` for a
:class:`~spectrack.pipeline.StudyResult` (``run_study`` calls it);
:func:`report_from_results` regenerates them from a results folder
(``spectrack report RESULTS_DIR``).

The page holds the study metadata with the source of every value, the
calibration per time point, %ID per region and time point, a mass-balance
check, time-activity curves with intervals and fitted models, the kinetics
table, maximum-intensity projections with region outlines, the neuraxis
profile (when computed), a table per time point and the provenance.
"""

from .core import ReportData, render_report, report_data, report_data_from_results, report_from_results, write_report
from .tables import MASS_BALANCE_TOL_PCT, mass_balance

__all__ = ["write_report", "report_from_results", "render_report", "report_data", "report_data_from_results",
           "ReportData", "mass_balance", "MASS_BALANCE_TOL_PCT"]
from .write import describe_study, study_record, write_json, write_label_maps, write_results
__all__ += ["describe_study", "study_record", "write_json", "write_label_maps", "write_results"]
