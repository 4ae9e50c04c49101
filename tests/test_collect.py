"""The Collector: checked at record(), buffered, flushed by size and time, thread-safe, never dropping."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime

import polars as pl
import pytest
from conftest import REC, USER, raw_event

from vtp_lab.collect import Collector
from vtp_lab.errors import EventValidationError, InputFormatError, StoreError
from vtp_lab.events import Event
from vtp_lab.io import read_documents
from vtp_lab.lab import Lab
from vtp_lab.validation import validate


def test_invalid_event_raises_at_record():
    with Collector(lambda a, r: None) as c, pytest.raises(EventValidationError) as info:
        c.record("playback_started", REC, USER, "s", {"playback_rate": 0})
    assert (info.value.reason, info.value.field) == ("invalid_metadata", "metadata.playback_rate")


def test_quarantine_mode_keeps_the_invalid_event():
    lab = Lab(":memory:")
    with lab.collector(on_invalid="quarantine") as c:
        c.record("playback_started", REC, USER, "s1")
        c.record("playback_started", "0" * 32, USER, "s1")
    rejected = lab.rejected_events()
    assert rejected.select("source", "row_number", "reason", "field").row(0) == (
        "collector",
        2,
        "nil_uuid",
        "recording_id",
    )
    assert '"recording_id": "00000000000000000000000000000000"' in rejected["raw"].item()
    assert lab.events().height == 1


def wait_for(condition, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_flush_by_size_and_by_time():
    batches: list[int] = []
    c = Collector(lambda a, r: batches.append(a.height), batch_size=3, flush_interval=1.0)
    start = time.monotonic()
    for i in range(4):
        c.record("buffer_start", REC, USER, f"s{i}")
    wait_for(lambda: batches == [3])
    wait_for(lambda: batches == [3, 1])
    assert time.monotonic() - start >= 0.9  # the leftover waited for the interval
    c.close()


def test_ids_are_derived_like_single_events():
    lab = Lab(":memory:")
    ts = datetime(2026, 9, 1, 10, tzinfo=UTC)
    with lab.collector() as c:
        c.record("PlaybackStarted", REC.upper(), USER, " s1 ", {"quality": "720p", "position": 0}, event_timestamp=ts)
        c.add(Event(event_type="session_ended", recording_id=REC, user_id=USER, session_id="s1", event_timestamp=ts))
    expected = Event(
        event_type="playback_started",
        recording_id=REC,
        user_id=USER,
        session_id="s1",
        event_timestamp=ts,
        metadata={"position": 0, "quality": "720p"},
    )
    got = lab.events().sort("event_type")
    assert got["id"].to_list() == [
        expected.id,
        Event(event_type="session_ended", recording_id=REC, user_id=USER, session_id="s1", event_timestamp=ts).id,
    ]
    assert got["metadata"][0] == '{"position":0,"quality":"720p"}'


def test_four_threads_store_exactly_200000():
    lab = Lab(":memory:")
    c = lab.collector(batch_size=10_000)

    def worker(k: int) -> None:
        for i in range(50_000):
            c.record("engagement_action", REC, USER, f"thread{k}", {"position": i, "action": "note_taken"})

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    c.close()
    stored = lab.events()
    assert stored.height == 200_000
    assert stored.group_by("session_id").len().sort("session_id")["len"].to_list() == [50_000] * 4


def test_slow_store_makes_record_wait_not_drop():
    stored: list[int] = []

    def slow(acc: pl.DataFrame, rej: pl.DataFrame) -> None:
        time.sleep(0.05)
        stored.append(acc.height)

    c = Collector(slow, batch_size=10, max_pending=1)
    start = time.perf_counter()
    for i in range(100):
        c.record("buffer_end", REC, USER, f"s{i}")
    assert time.perf_counter() - start > 0.3  # record() waited for the store
    c.close()
    assert sum(stored) == 100


def test_batches_that_waited_for_the_store_go_in_one_append():
    release = threading.Event()
    sizes: list[int] = []

    def blocked(acc: pl.DataFrame, rej: pl.DataFrame) -> None:
        release.wait(5)
        sizes.append(acc.height)

    c = Collector(blocked, batch_size=10, max_pending=4, on_invalid="quarantine")
    for i in range(50):
        c.record("buffer_end", REC, USER, f"s{i}")
    c.record("buffer_end", "0" * 32, USER, "bad")  # a rejected row rides along
    release.set()
    c.close()
    assert sum(sizes) == 50 and len(sizes) <= 3  # the first batch, the four queued behind it, the rejected row


def test_failing_store_keeps_events_and_says_how_to_retry():
    calls = {"n": 0}
    kept: list[int] = []

    def flaky(acc: pl.DataFrame, rej: pl.DataFrame) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("disk full")
        kept.append(acc.height)

    c = Collector(flaky, batch_size=5)
    for i in range(5):
        c.record("buffer_end", REC, USER, f"s{i}")
    deadline = time.monotonic() + 30
    while c._error is None and time.monotonic() < deadline:  # the background flush has failed
        time.sleep(0.01)
    with pytest.raises(StoreError, match="call flush\\(\\) to try again"):
        c.record("buffer_end", REC, USER, "s5")
    c.flush()
    c.record("buffer_end", REC, USER, "s6")
    c.close()
    assert kept == [5, 1]


def test_closed_collector_refuses_and_bad_settings_are_named():
    c = Collector(lambda a, r: None)
    c.close()
    with pytest.raises(StoreError, match="closed"):
        c.record("buffer_end", REC, USER, "s")
    with pytest.raises(ValueError, match="batch_size=0"):
        Collector(lambda a, r: None, batch_size=0)


def _doc(*events: dict[str, object]) -> str:
    return json.dumps(list(events))


def test_documents_waiting_together_are_stored_in_one_batch_with_exact_receipts():
    lab = Lab(":memory:")
    release = threading.Event()
    batches: list[int] = []

    def sink(accepted: pl.DataFrame, rejected: pl.DataFrame) -> object:
        release.wait(10)
        batches.append(accepted.height + rejected.height)
        return lab.store.append(accepted, rejected, return_ids=True)

    lab.store.append(validate(pl.DataFrame([raw_event(session_id="old")])).accepted)
    c = Collector(sink)
    first = c.submit(_doc(raw_event(session_id="a")))
    time.sleep(0.3)  # the worker is now inside the sink with the first document
    second = c.submit(_doc(raw_event(session_id="b"), raw_event(session_id="old"), raw_event(event_type="x")))
    third = c.submit("{}\nnot json\n" + json.dumps(raw_event(session_id="b")), ndjson=True)
    release.set()
    receipts = [f.result(10) for f in (first, second, third)]
    c.close()
    assert batches == [1, 6]  # the second and third documents went in together
    assert [(r.accepted, r.duplicates, r.rejected.height) for r in receipts] == [(1, 0, 0), (1, 1, 1), (0, 1, 2)]
    assert receipts[2].rejected.select("row_number", "reason").rows() == [(1, "missing_field"), (2, "malformed")]
    assert sorted(lab.events()["session_id"].to_list()) == ["a", "b", "old"]
    quarantine = lab.rejected_events()
    assert quarantine.height == 3 and set(quarantine["source"]) == {receipts[1].source, receipts[2].source}


def test_a_document_that_is_not_json_is_refused_whole_and_others_are_not():
    lab = Lab(":memory:")
    with lab.collector() as c:
        bad = c.submit('[{"event_type": "buffer_end"},')
        good = c.submit(_doc(raw_event(session_id="fine")))
        with pytest.raises(InputFormatError, match="not valid JSON"):
            bad.result(10)
        assert good.result(10).accepted == 1
    assert lab.events().height == 1 and lab.rejected_events().height == 0


def test_documents_as_bytes_or_with_a_byte_order_mark_are_stored_and_others_refused_at_once():
    lab = Lab(":memory:")
    with lab.collector() as c:
        as_bytes = c.submit(_doc(raw_event(session_id="bytes")).encode())
        marked = c.submit("\ufeff" + _doc(raw_event(session_id="marked")))
        for text, source in ((42, None), (_doc(raw_event()), 7)):
            with pytest.raises(TypeError, match="submit takes a document as text or bytes"):
                c.submit(text, source=source)  # type: ignore[arg-type]
        after = c.submit(_doc(raw_event(session_id="after")))
        assert [f.result(10).accepted for f in (as_bytes, marked, after)] == [1, 1, 1]
    assert sorted(lab.events()["session_id"].to_list()) == ["after", "bytes", "marked"]


def test_a_failure_while_grouping_documents_fails_them_and_the_worker_goes_on(monkeypatch):
    calls = []

    def fail_once(docs: pl.DataFrame) -> object:
        calls.append(docs.height)
        if len(calls) == 1:
            raise RuntimeError("unexpected")
        return read_documents(docs)

    monkeypatch.setattr("vtp_lab.collect.read_documents", fail_once)
    lab = Lab(":memory:")
    with lab.collector() as c:
        with pytest.raises(StoreError, match="unexpected"):
            c.submit(_doc(raw_event(session_id="first"))).result(10)
        assert c.submit(_doc(raw_event(session_id="second"))).result(10).accepted == 1
    assert lab.events()["session_id"].to_list() == ["second"]


def test_a_failing_store_fails_the_documents_and_stores_nothing():
    def sink(accepted: pl.DataFrame, rejected: pl.DataFrame) -> None:
        raise OSError("disk full")

    c = Collector(sink)
    future = c.submit(_doc(raw_event()))
    with pytest.raises(StoreError, match=r"disk full.*send them again"):
        future.result(10)
    c.close()


def test_metadata_that_json_cannot_hold_is_invalid_metadata_and_add_takes_only_events():
    lab = Lab(":memory:")
    with lab.collector() as c:
        with pytest.raises(EventValidationError, match="invalid_metadata"):
            c.record("buffer_end", REC, USER, "s", {"tags": {1, 2}})
        with pytest.raises(TypeError, match=r"add takes a vtp_lab\.Event, not a dict"):
            c.add({"event_type": "buffer_end"})  # type: ignore[arg-type]
    with lab.collector(on_invalid="quarantine") as c:
        c.record("buffer_end", REC, USER, "s", {"tags": {1, 2}})
    assert lab.rejected_events().select("reason", "field").rows() == [("invalid_metadata", "metadata")]
    assert lab.events().height == 0
