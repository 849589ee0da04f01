"""The default transport: one .eml file per person under the outbox folder, nothing leaves the computer.

A real transport, not a stand-in: the files are complete RFC 5322 messages (open one in any mail
program), written the same way SMTP would send them. Each file is written to a temporary name and
renamed, so a crash never leaves half a message behind.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from mailroom.errors import TransportError
from mailroom.send.transports.base import Batch, BatchResult, Delivery, Transport, Version
from mailroom.send.transports.limits import OUTBOX_LIMIT, message_bytes, refuse_if_too_big
from mailroom.send.transports.mime import MimeTemplates, safe_filename, stamp


class OutboxTransport(Transport):
    name = "outbox"
    max_batch_size = 200
    one_message_at_a_time = True  # each person recorded in the ledger as their message is accepted

    def __init__(self, outbox_dir: Path) -> None:
        self.outbox_dir = Path(outbox_dir)
        self._templates = MimeTemplates()

    def describe(self) -> str:
        return f"the outbox folder {self.outbox_dir} (nothing is emailed)"

    def check_version(self, version: Version) -> None:
        """The outbox stands for email: refuse a message no common mail service would take (limits.py)."""
        size = message_bytes(self._templates.for_version(version))
        refuse_if_too_big(version, size, OUTBOX_LIMIT, "most mail services (Gmail among them) take")

    def folder(self, newsletter: str) -> Path:
        return self.outbox_dir / safe_filename(newsletter)

    def send_batch(self, batch: Batch) -> BatchResult:
        template = self._templates.for_version(batch.version)
        folder = self.folder(batch.version.newsletter)
        folder.mkdir(parents=True, exist_ok=True)
        now = datetime.now(UTC)
        result = self.new_result()  # each person reported as their file is written (dispatch records it)
        for message in batch.messages:
            if batch.version.test:
                name = f"test-{safe_filename(batch.version.audience)}-{stamp()}-{batch.batch_id}.eml"
            else:
                name = f"{safe_filename(message.recipient_id)}.eml"
            try:
                message_id, data = template.render(message, now=now)
            except TransportError as exc:  # this person's data cannot make a valid message: only they miss out
                result.add(message.key, Delivery.REJECTED, error=exc.message)
                continue
            try:
                _write_atomically(folder / name, data)
            except OSError as exc:
                result.add(message.key, Delivery.REJECTED,
                           error=f"could not write {folder / name}: {exc.strerror or exc}")
                break  # the rest stay NOT_SENT; dispatch decides whether to try again
            result.add(message.key, Delivery.SENT, message_id=message_id)
        return result


def _write_atomically(path: Path, data: bytes) -> None:
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temp, "wb") as handle:
        handle.write(data)
    os.replace(temp, path)
