"""A batch waiting for its group commit, its Idempotency-Key, and the answer it gets."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field

from ingest.validate import Batch


@dataclass(frozen=True)
class Accepted:
    accepted: int
    duplicate: bool = False

    def body(self) -> dict[str, object]:
        return {"accepted": self.accepted, "duplicate": self.duplicate}


@dataclass(frozen=True)
class IdempotencyKey:
    scope: str
    key: str
    body_sha256: bytes

    @classmethod
    def of(cls, scope: str, key: str, body: bytes) -> IdempotencyKey:
        return cls(scope, key, hashlib.sha256(body).digest())


@dataclass(eq=False)
class Pending:
    batch: Batch
    key: IdempotencyKey | None
    future: asyncio.Future[Accepted] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    abandoned: bool = False

    def settle(self, outcome: Accepted | BaseException) -> None:
        if self.future.done():
            return
        if self.abandoned:  # its request was answered already: nobody will read an exception
            self.future.cancel()
        elif isinstance(outcome, BaseException):
            self.future.set_exception(outcome)
        else:
            self.future.set_result(outcome)
