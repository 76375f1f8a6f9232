"""`json_of`: a response message as the JSON body of its route.

Proto3's JSON mapping writes 64-bit integers as strings (JavaScript's numbers are exact only to
2**53); the stats answer Unix times and counts, which every JSON reader takes exactly as
numbers, so they are written as numbers. Fields with no presence (lists, numbers) are always
written, so an empty list is ``[]``.

Must not import prisme_core.
"""

from __future__ import annotations

from typing import Any, Final

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

WIDE_INTEGERS: Final = frozenset(
    {
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED64,
    }
)


def json_of(message: Message) -> dict[str, Any]:
    found = MessageToDict(message, always_print_fields_with_no_presence=True)
    return _numbers(message.DESCRIPTOR, found)


def _numbers(descriptor: Any, found: dict[str, Any]) -> dict[str, Any]:
    """``found`` with the wide integers of ``descriptor``'s fields as numbers."""
    for field in descriptor.fields:
        value = found.get(field.json_name)
        if value is None:
            continue
        if field.type in WIDE_INTEGERS:
            found[field.json_name] = (
                [int(v) for v in value] if isinstance(value, list) else int(value)
            )
        elif field.message_type is not None and not field.message_type.GetOptions().map_entry:
            items = value if isinstance(value, list) else [value]
            for item in items:
                if isinstance(item, dict):
                    _numbers(field.message_type, item)
    return found
