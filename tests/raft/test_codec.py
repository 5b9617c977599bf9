"""The message codec: round trips, and garbage only ever raises MessageDecodeError."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage.raft.core import Message, MessageDecodeError, MsgKind, decode_message, encode_message

u64 = st.integers(min_value=0, max_value=(1 << 64) - 1)
names = st.text(min_size=1, max_size=8)

messages = st.builds(
    Message,
    kind=st.sampled_from(MsgKind),
    to=names,
    frm=names,
    term=u64,
    index=u64,
    log_term=u64,
    commit=u64,
    entries=st.lists(st.tuples(u64, st.binary(max_size=16)), max_size=4).map(tuple),
    reject=st.booleans(),
    hint_index=u64,
    hint_term=u64,
    offset=u64,
    data=st.binary(max_size=32),
    done=st.booleans(),
    force=st.booleans(),
)


@given(messages)
def test_round_trip(m: Message) -> None:
    assert decode_message(encode_message(m)) == m


@given(st.binary(max_size=200))
def test_garbage_raises_only_the_codec_error(raw: bytes) -> None:
    try:
        decode_message(raw)
    except MessageDecodeError:
        pass


@given(messages, st.integers(min_value=0, max_value=15), st.sampled_from([None, -1, 2.5, {}]))
def test_wrong_field_types_are_refused(m: Message, field: int, value: object) -> None:
    fields = msgpack.unpackb(encode_message(m))
    fields[field] = value
    with pytest.raises(MessageDecodeError):
        decode_message(msgpack.packb(fields))


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\xc1",
        msgpack.packb([]),
        msgpack.packb([2] + [0] * 15),
        msgpack.packb({"kind": 1}),
        encode_message(Message(MsgKind.APPEND, "a", "b", 1)) + b"\x00",
        encode_message(Message(MsgKind.APPEND, "a", "b", 1))[:-1],
    ],
)
def test_known_bad_frames(raw: bytes) -> None:
    with pytest.raises(MessageDecodeError):
        decode_message(raw)


def test_unknown_kind() -> None:
    fields = msgpack.unpackb(encode_message(Message(MsgKind.APPEND, "a", "b", 1)))
    fields[1] = 99
    with pytest.raises(MessageDecodeError):
        decode_message(msgpack.packb(fields))
