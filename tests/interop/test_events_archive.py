"""Archives and replays through boto3: events archived by pattern, replayed to their bus with
``replay-name`` added (to every rule, or only to FilterArns rules), never archived twice."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

from tests.interop import events_helpers
from tests.interop.events_helpers import (
    bus_arn,
    expect_error,
    name,
    nothing,
    put,
    receive_bodies,
    rule_to_queue,
)

events_broker, events, sqs = (
    events_helpers.events_broker,
    events_helpers.events,
    events_helpers.sqs,
)
WAIT_S = 15.0


def wait_replay(events: Any, replay: str, state: str = "COMPLETED") -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_S
    while True:
        got: dict[str, Any] = events.describe_replay(ReplayName=replay)
        if got["State"] == state or time.monotonic() > deadline:
            assert got["State"] == state, got
            return got
        time.sleep(0.1)


def test_archive_and_replay(events: Any, sqs: Any) -> None:
    source = name("src").replace("-", ".")
    bus = name("bus")
    events.create_event_bus(Name=bus)
    archive = name("arc")
    created = events.create_archive(
        ArchiveName=archive,
        EventSourceArn=bus_arn(bus),
        EventPattern=json.dumps({"detail": {"keep": [True]}}),
        RetentionDays=1,
        Description="kept",
    )
    assert created["State"] == "ENABLED"
    rule_a, url_a = rule_to_queue(events, sqs, {"source": [source]}, bus=bus)
    _rule_b, url_b = rule_to_queue(events, sqs, {"source": [source]}, bus=bus)
    start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    put(
        events,
        *(
            {
                "Source": source,
                "DetailType": "t",
                "Detail": {"n": i, "keep": i != 1},
                "EventBusName": bus,
            }  # noqa: E501
            for i in range(3)
        ),
    )
    assert len(receive_bodies(sqs, url_a, 3)) == 3
    assert len(receive_bodies(sqs, url_b, 3)) == 3
    got = events.describe_archive(ArchiveName=archive)
    assert (got["EventCount"], got["RetentionDays"], got["Description"]) == (2, 1, "kept")
    assert got["EventPattern"] == json.dumps({"detail": {"keep": [True]}})
    time.sleep(1.1)  # EventEndTime must not be in the future
    end = dt.datetime.now(dt.UTC)
    replay = name("rep")
    started = events.start_replay(
        ReplayName=replay,
        EventSourceArn=created["ArchiveArn"],
        EventStartTime=start,
        EventEndTime=end,
        Destination={"Arn": bus_arn(bus)},
    )
    assert started["State"] == "STARTING"
    done = wait_replay(events, replay)
    assert done["Destination"] == {"Arn": bus_arn(bus)}
    for url in (url_a, url_b):
        bodies = [json.loads(b) for b in receive_bodies(sqs, url, 2)]
        assert sorted(b["detail"]["n"] for b in bodies) == [0, 2]
        assert {b["replay-name"] for b in bodies} == {replay}
    # replayed events are not archived again, and the archive still holds its two
    assert events.describe_archive(ArchiveName=archive)["EventCount"] == 2
    # only the FilterArns rules receive a filtered replay
    replay2 = name("rep")
    events.start_replay(
        ReplayName=replay2,
        EventSourceArn=created["ArchiveArn"],
        EventStartTime=start,
        EventEndTime=end,
        Destination={"Arn": bus_arn(bus), "FilterArns": [events_helpers.rule_arn(rule_a, bus)]},
    )
    wait_replay(events, replay2)
    assert len(receive_bodies(sqs, url_a, 2)) == 2
    nothing(sqs, url_b)
    names = [r["ReplayName"] for r in events.list_replays(NamePrefix="pmq-rep")["Replays"]]
    assert replay in names and replay2 in names
    expect_error(
        events.cancel_replay,
        "IllegalStatusException",
        ReplayName=replay,
    )
    events.update_archive(ArchiveName=archive, RetentionDays=2)
    assert events.describe_archive(ArchiveName=archive)["RetentionDays"] == 2
    listed = events.list_archives(EventSourceArn=bus_arn(bus))["Archives"]
    assert [a["ArchiveName"] for a in listed] == [archive]
    events.delete_archive(ArchiveName=archive)
    expect_error(
        events.describe_archive,
        "ResourceNotFoundException",
        f"Archive {archive} does not exist.",
        ArchiveName=archive,
    )


def test_replay_validation(events: Any) -> None:
    bus = name("bus")
    events.create_event_bus(Name=bus)
    archive = name("arc")
    arn = events.create_archive(ArchiveName=archive, EventSourceArn=bus_arn(bus))["ArchiveArn"]
    now = dt.datetime.now(dt.UTC)
    expect_error(
        events.start_replay,
        "ValidationException",
        ReplayName=name("rep"),
        EventSourceArn=arn,
        EventStartTime=now,
        EventEndTime=now - dt.timedelta(minutes=1),
        Destination={"Arn": bus_arn(bus)},
    )
    expect_error(
        events.start_replay,
        "ValidationException",
        "Parameter Destination.Arn is not valid. Reason: Cross event bus replay is not permitted.",
        ReplayName=name("rep"),
        EventSourceArn=arn,
        EventStartTime=now - dt.timedelta(minutes=2),
        EventEndTime=now - dt.timedelta(minutes=1),
        Destination={"Arn": bus_arn("default")},
    )
    expect_error(
        events.create_archive,
        "ResourceAlreadyExistsException",
        f"Archive {archive} already exists.",
        ArchiveName=archive,
        EventSourceArn=bus_arn(bus),
    )
