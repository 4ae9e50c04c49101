"""The six reports of the platform's design note: built from frames (:mod:`.builders`), rendered by :mod:`.rendering`.

Example:
    >>> from vtp_lab.stats import derive
    >>> from vtp_lab.synth import semester
    >>> d = derive(semester(courses=1, lectures_per_course=2, students=5, seed=3).events)
    >>> build("quality", derived=d).to_markdown().splitlines()[0]
    '# Streaming quality'
"""

from vtp_lab.reports.builders import (
    REPORTS,
    AttendanceReport,
    Audit,
    ComplianceReport,
    EngagementReport,
    PerformanceReport,
    QualityReport,
    ReportBuilder,
    StudentEngagementReport,
    attendance,
    build,
    compliance,
    engagement,
    entry,
    performance,
    quality,
    student,
)
from vtp_lab.reports.rendering import REPORT_KINDS, Report, ReportKind

__all__ = [
    "REPORTS",
    "REPORT_KINDS",
    "AttendanceReport",
    "Audit",
    "ComplianceReport",
    "EngagementReport",
    "PerformanceReport",
    "QualityReport",
    "Report",
    "ReportBuilder",
    "ReportKind",
    "StudentEngagementReport",
    "attendance",
    "build",
    "compliance",
    "engagement",
    "entry",
    "performance",
    "quality",
    "student",
]
