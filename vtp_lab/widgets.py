"""The dashboard: pickers, headline tiles, charts, alerts, and a panel to prototype an engagement score.

``lab.dashboard()`` builds it from the Lab's derived tables once; a picker change filters
those cached frames (it does not recompute from events). Applying a score in the panel
recomputes the statistics with it.

Example:
    >>> import vtp_lab as vl
    >>> lab = vl.Lab(":memory:")
    >>> _ = lab.append(vl.synth.semester(courses=1, lectures_per_course=2, students=6, seed=5).events)
    >>> d = Dashboard(lab)
    >>> d.tiles_data()["sessions"] == lab.playback_sessions().height
    True
"""

from __future__ import annotations

import html
from typing import Any, Protocol, cast

import polars as pl

from vtp_lab.metrics import qoe, weekly_engagement
from vtp_lab.plot import completion_distribution, engagement_by_week, qoe_against_completion
from vtp_lab.recordings import course_titles
from vtp_lab.stats import DEFAULT_SCORE, DEFAULT_WEIGHTS, Derived, derive, weighted_score

__all__ = ["Dashboard", "Source"]

_ALL = "(all)"


class Source(Protocol):
    """What the dashboard reads: the derived tables, and the events to recompute them with another score (a Lab).

    Example:
        >>> import vtp_lab as vl
        >>> all(hasattr(vl.Lab(":memory:"), m) for m in ("derived", "events"))
        True
    """

    def derived(self) -> Derived:
        """Every derived table."""
        ...

    def events(self) -> pl.DataFrame:
        """Every stored event."""
        ...


class Dashboard:
    """An ipywidgets app over a Lab: pick a course, lecture or student; read tiles, charts and alerts.

    Every picker's options are ``(label, value)`` pairs, ``"(all)"`` first.

    ``weights`` in the score panel are the default score's four terms (coverage, time on
    task, completed, revisiting); ``expression`` takes any polars expression over the
    engagement features (``pl.col("coverage") * 100``), evaluated with ``pl`` in scope.

    Example:
        >>> import vtp_lab as vl
        >>> d = Dashboard(vl.Lab(":memory:"))
        >>> d.course.options
        (('(all)', '(all)'),)
    """

    def __init__(self, source: Source) -> None:
        import ipywidgets as w

        self.source = source
        self.derived: Derived = source.derived()
        self._alerts = self.derived.alerts()
        self._course_titles = course_titles(self.derived.recordings)
        labelled = [(title or course, course) for course, title in self._course_titles.iter_rows()]  # a title if any
        self.course = w.Dropdown(options=[(_ALL, _ALL), *labelled], value=_ALL, description="course")
        self.lecture = w.Dropdown(options=[(_ALL, _ALL)], value=_ALL, description="lecture")
        self.student = w.Dropdown(options=[(_ALL, _ALL)], value=_ALL, description="student")
        self.tiles = w.HTML()
        self.charts = w.HTML()
        self.alerts_table = w.HTML()
        self.weights = {
            name: w.FloatSlider(
                value=value,
                min=0,
                max=1,
                step=0.05,
                description=name.replace("_", " "),
                readout_format=".2f",
                style={"description_width": "8em"},  # "time on task" whole, not "time on ta..."
                layout=w.Layout(width="26em"),
            )
            for name, value in DEFAULT_WEIGHTS.items()
        }
        self.expression = w.Text(placeholder='e.g. 100 * pl.col("coverage")', description="expression")
        self.apply = w.Button(description="apply score")
        self.score_status = w.HTML()
        self._quiet = False
        self._refresh_lectures()
        self.course.observe(lambda _: self._on_course(), names="value")
        self.lecture.observe(lambda _: self._on_pick(), names="value")
        self.student.observe(lambda _: self._on_pick(), names="value")
        self.apply.on_click(lambda _: self.apply_score())
        panel = w.VBox(
            [
                w.HTML("<b>prototype an engagement score</b>"),
                *self.weights.values(),
                self.expression,
                self.apply,
                self.score_status,
            ],
            layout=w.Layout(flex="0 0 28em", min_width="28em"),  # the sliders' readouts whole, beside the charts
        )
        self.widget = w.VBox(
            [
                w.HBox([self.course, self.lecture, self.student]),
                self.tiles,
                w.HBox([self.charts, panel]),
                self.alerts_table,
            ]
        )
        self.update()

    def _recordings(self) -> list[str]:
        cat = self.derived.recordings
        if self.course.value != _ALL:
            cat = cat.filter(pl.col("course_id") == self.course.value)
        return cat["recording_id"].to_list()

    def _refresh_lectures(self) -> None:
        titles = self.derived.recordings.filter(pl.col("recording_id").is_in(self._recordings())).sort(
            "published_at", "title", nulls_last=True
        )  # in the course's order, not the titles' ("lecture 10" after "lecture 9")
        self.lecture.options = [
            (_ALL, _ALL),
            *[(t or r, r) for t, r in titles.select("title", "recording_id").iter_rows()],
        ]
        self.lecture.value = _ALL
        users = (
            self.derived.engagement_features.filter(pl.col("recording_id").is_in(self._recordings()))["user_id"]
            .unique()
            .sort()
        )
        self.student.options = [(_ALL, _ALL), *((u, u) for u in users.to_list())]
        self.student.value = _ALL

    def _on_course(self) -> None:
        self._quiet = True  # the lecture and student pickers are reset: one redraw, not three
        try:
            self._refresh_lectures()
        finally:
            self._quiet = False
        self.update()

    def _on_pick(self) -> None:
        if not self._quiet:
            self.update()

    def selection(self) -> tuple[pl.DataFrame, pl.DataFrame]:
        """(session details, engagement features) of what the pickers select.

        Example:
            >>> import vtp_lab as vl
            >>> Dashboard(vl.Lab(":memory:")).selection()[0].height
            0
        """
        recs = [self.lecture.value] if self.lecture.value != _ALL else self._recordings()
        keep = pl.col("recording_id").is_in(recs)
        details = self.derived.session_details.filter(keep)
        feats = self.derived.engagement_features.filter(keep)
        if self.student.value != _ALL:
            details = details.filter(pl.col("user_id") == self.student.value)
            feats = feats.filter(pl.col("user_id") == self.student.value)
        return details, feats

    def tiles_data(self) -> dict[str, Any]:
        """The headline numbers of the current selection.

        Example:
            >>> import vtp_lab as vl
            >>> Dashboard(vl.Lab(":memory:")).tiles_data()["sessions"]
            0
        """
        details, feats = self.selection()
        scored = qoe(details) if details.height else details
        return {
            "sessions": details.height,
            "students": int(feats["user_id"].n_unique()),
            "watch_hours": round(cast(float, details["watched_seconds"].sum()) / 3600, 1) if details.height else 0.0,
            "mean_completion": round(cast(float, details["completion_rate"].mean()), 1)
            if details["completion_rate"].drop_nulls().len()
            else None,
            "mean_engagement": round(cast(float, feats["engagement_score"].mean()), 1) if feats.height else None,
            "qoe_score": round(cast(float, scored["qoe_score"].mean()), 1) if details.height else None,
        }

    def update(self) -> None:
        """Redraw tiles, charts and alerts for the current selection (from cached frames).

        Example:
            >>> import vtp_lab as vl
            >>> Dashboard(vl.Lab(":memory:")).update()
        """
        tiles = "".join(
            "<div style='display:inline-block;margin:0 1.5em 0 0'>"
            f"<div style='font-size:1.6em'>{html.escape('-' if v is None else f'{v:,}')}</div>"
            f"<div style='color:#666'>{html.escape(k.replace('_', ' '))}</div></div>"
            for k, v in self.tiles_data().items()
        )
        self.tiles.value = tiles
        details, feats = self.selection()
        self.charts.value = self._charts_svg(details, feats) if details.height else ""
        shown = self._alerts
        if self.course.value != _ALL:
            shown = shown.filter(pl.col("course_id") == self.course.value)
        rows = "".join(
            "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
            for row in shown.head(15).select("kind", "subject", "rule").iter_rows()
        )
        self.alerts_table.value = (
            f"<b>alerts</b> ({shown.height:,})<table><tr><th>kind</th><th>subject</th><th>rule</th></tr>{rows}</table>"
        )

    def _charts_svg(self, details: pl.DataFrame, feats: pl.DataFrame) -> str:
        """The selection's charts as inline SVG (rendered here by vl-convert: nothing loads from the web)."""
        import vl_convert

        charts = [completion_distribution(details), qoe_against_completion(details)]
        if self.student.value == _ALL and self.lecture.value == _ALL:
            weekly = weekly_engagement(feats, self.derived.recordings)
            charts.append(engagement_by_week(weekly.join(self._course_titles, on="course_id", how="left")))
        return "".join(
            f"<div style='display:inline-block'>{vl_convert.vegalite_to_svg(c.to_dict())}</div>" for c in charts
        )

    def apply_score(self) -> None:
        """Recompute the statistics with the panel's score (the expression if given, else the weights).

        Example:
            >>> import vtp_lab as vl
            >>> d = Dashboard(vl.Lab(":memory:"))
            >>> d.expression.value = "pl.col('nope') +"
            >>> d.apply_score()
            >>> d.score_status.value.startswith("could not use")
            True
        """
        text = self.expression.value.strip()
        try:
            if text:
                score = eval(text, {"pl": pl})
            else:
                score = weighted_score({name: slider.value for name, slider in self.weights.items()})
            events = self.source.events()
            self.derived = derive(
                events, recordings=self.derived.recordings, score=score if score is not None else DEFAULT_SCORE
            )
        except Exception as exc:  # shown to the researcher, who is editing the expression
            self.score_status.value = f"could not use this score: {html.escape(str(exc))}"
            return
        self.score_status.value = "score applied: the tiles and statistics now use it"
        self.update()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)
