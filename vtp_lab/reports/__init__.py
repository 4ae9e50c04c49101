"""The six reports of the platform's design note: built from frames (:mod:`.builders`), rendered by :mod:`.rendering`.

Example:
    >>> from vtp_lab.stats import derive
    >>> from vtp_lab.synth import semester
    >>> d = derive(semester(courses=1, lectures_per_course=2, students=5, seed=3).events)
    >>> build("quality", derived=d).to_markdown().splitlines()[0]
    '# Streaming quality'
"""

from vtp_lab.reports import builders
from vtp_lab.reports.builders import *  # noqa: F403  (the public names, listed once in builders.__all__)

__all__ = builders.__all__
