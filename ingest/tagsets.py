"""Tag sets: parsed, checked and canonicalised once per distinct text, then known by a small id.

Most events of a stream repeat a few tag sets, byte for byte. Events keep their tags as raw JSON
text; the first time a text is seen (with the event's `source`) it is decoded, checked against
the limits and interned as a sorted tuple of pairs with an integer id. Every later event with the
same text costs one dict lookup. The ids are never reused, because the series cache keys on them.
"""

from __future__ import annotations

import re
import threading
from typing import Annotated

import msgspec

from core.settings import IngestSettings

TAG_KEY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.:/-]*$"
TagKey = Annotated[str, msgspec.Meta(min_length=1, pattern=TAG_KEY_PATTERN)]
TAG_KEY = re.compile(TAG_KEY_PATTERN)
Tags = tuple[tuple[str, str], ...]
Problems = list[tuple[str, str]]

_decode_tags = msgspec.json.Decoder(dict[TagKey, str])
_AT = re.compile(r" - at `[^`]*`$")
# Distinct texts remembered per process; past this the text cache starts again (ids stay).
MAX_TEXTS = 200_000


class _Interner:
    """Canonical tag set <-> id, for the life of the process."""

    def __init__(self) -> None:
        self._ids: dict[Tags, int] = {}
        self._sets: list[Tags] = []
        self._lock = threading.Lock()

    def id(self, tags: Tags) -> int:
        found = self._ids.get(tags)
        if found is not None:
            return found
        with self._lock:
            found = self._ids.get(tags)
            if found is None:
                found = len(self._sets)
                self._sets.append(tags)
                self._ids[tags] = found
            return found

    def tags(self, tag_id: int) -> Tags:
        return self._sets[tag_id]


interned = _Interner()


class TagSets:
    """Tag texts checked against one set of limits; `lookup` is called once per event."""

    def __init__(self, limits: IngestSettings) -> None:
        self.limits = limits
        self._texts: dict[tuple[bytes, str | None], int | Problems] = {}

    def lookup(self, text: bytes, source: str | None) -> int | Problems:
        """The tag-set id of an event's tags (and source), or what is wrong with them."""
        found = self._texts.get((text, source))
        if found is None:
            found = self._parse(text, source)
            if len(self._texts) >= MAX_TEXTS:
                self._texts.clear()
            self._texts[(text, source)] = found
        return found

    def _parse(self, text: bytes, source: str | None) -> int | Problems:
        try:
            tags = _decode_tags.decode(text)
        except msgspec.ValidationError as exc:
            return [("tags", _AT.sub("", str(exc)))]
        except msgspec.DecodeError as exc:  # cannot happen inside a valid event; kept for safety
            return [("tags", str(exc))]
        problems = self._check(tags, source)
        if problems:
            return problems
        if source is not None:
            tags["source"] = source
        return interned.id(tuple(sorted(tags.items())))

    def _check(self, tags: dict[str, str], source: str | None) -> Problems:
        limits = self.limits
        problems: Problems = []
        if source is not None:
            if tags.get("source", source) != source:
                problems.append(("source", "differs from the tag `source`; give one or the other"))
            if "\x00" in source:
                problems.append(("source", "contains a NUL character"))
            if len(source) > limits.max_tag_value_length:
                problems.append(("source", f"longer than {limits.max_tag_value_length} characters"))
        count = len(tags) + (1 if source is not None and "source" not in tags else 0)
        if count > limits.max_tags:
            problems.append(("tags", f"more than {limits.max_tags} tags, counting `source`"))
        for key, value in tags.items():
            if "\x00" in value:
                problems.append((f"tags.{key[:40]}", "contains a NUL character"))
            if len(key) > limits.max_tag_key_length:
                problems.append(
                    (f"tags.{key[:40]}", f"key longer than {limits.max_tag_key_length}")
                )
            if len(value) > limits.max_tag_value_length:
                problems.append(
                    (
                        f"tags.{key[:40]}",
                        f"value longer than {limits.max_tag_value_length} characters",
                    )
                )
        return problems
