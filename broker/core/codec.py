"""msgpack encoding of commands and of logged entries.

A logged entry is ``[time_ms, command]``. Decoding never raises anything but
``DecodeError``: garbage, truncated data, a non-list command or an unknown
opcode all become ``DecodeError``.
"""

from __future__ import annotations

from typing import Any

import msgpack

from broker.core.commands import ARITY

__all__ = ["DecodeError", "decode_command", "decode_entry", "encode_command", "encode_entry"]


class DecodeError(ValueError):
    """The bytes are not a valid command or entry."""


_packb = msgpack.packb


def encode_command(cmd: list[Any]) -> bytes:
    data = _packb(cmd, use_bin_type=True)
    assert isinstance(data, bytes)
    return data


def encode_entry(time_ms: int, cmd: list[Any]) -> bytes:
    data = _packb([time_ms, cmd], use_bin_type=True)
    assert isinstance(data, bytes)
    return data


def _unpack(data: bytes) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=True)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise DecodeError(f"undecodable msgpack: {exc}") from None


def _check_command(cmd: Any) -> list[Any]:
    if not isinstance(cmd, list) or not cmd:
        raise DecodeError("a command is a non-empty list")
    op = cmd[0]
    if type(op) is not int or op not in ARITY:
        raise DecodeError(f"unknown opcode {op!r}")
    if len(cmd) != ARITY[op] + 1:
        raise DecodeError(f"opcode {op} takes {ARITY[op]} fields, got {len(cmd) - 1}")
    return cmd


def decode_command(data: bytes) -> list[Any]:
    return _check_command(_unpack(data))


def decode_entry(data: bytes) -> tuple[int, list[Any]]:
    obj = _unpack(data)
    if not isinstance(obj, list) or len(obj) != 2 or type(obj[0]) is not int:
        raise DecodeError("an entry is [time_ms, command]")
    return obj[0], _check_command(obj[1])
