"""The ``spectrack`` command line: thin wrappers around one library call each.

Exit codes: see :mod:`spectrack.errors` (``spectrack --help`` lists them).
Bad input prints one ``spectrack: error: ...`` line, never a traceback; a bad
option value is a usage error (exit 2).

The study options (``--labels``, ``--sensitivity``, ``--auto-regions``...)
are defined once, by the fields of :class:`spectrack.settings.Settings`, and
added to every command that runs studies with :func:`study_options`; a
settings file (``--config``) takes the same keys. Nothing the user or a file
supplies is ever parsed as rich markup (see :func:`_say`).

Progress goes to stderr: a rich bar on a terminal, otherwise (batch jobs,
``nohup``, schedulers, pipes) one log line per stage with the elapsed time.

The package: :mod:`.root` (the app, the order of its commands, :func:`main`),
:mod:`.options` (the shared study options), :mod:`.output` (plain output and
progress), :mod:`.checks` (output paths checked before any work), and the
commands by group: :mod:`.study_commands` (quantify, batch),
:mod:`.phantom_commands` (demo, phantom), :mod:`.file_commands` (info,
resolution, export, report). Every name is importable from here.
"""

from .file_commands import export, info, report, resolution, timepoint_summary
from .options import StudyOptions, study_options
from .output import _say, _warn, print_table
from .phantom_commands import demo, phantom
from .root import _entry, app, main
from .study_commands import batch, max_workers, quantify

__all__ = ["app", "main", "study_options", "StudyOptions", "print_table", "timepoint_summary", "info", "quantify",
           "demo", "phantom", "resolution", "max_workers", "batch", "export", "report",
           "_entry", "_say", "_warn"]
