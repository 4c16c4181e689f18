"""What bank.json vouches for: its format version, and per CSV the bytes, rows and SHA-256 of its committed part.

In: a bank folder. Out: bank.json as a dict (`read_bank_meta`), a CSV's committed text (`committed_text`: rows
appended after the last bank.json write belong to an unfinished image), and `FileSum`, the running record a writer
keeps of each CSV. A bank.json or CSV that does not match is a UserError naming it and the fix.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from naturalize.bank.files import READ_VERSIONS
from naturalize.fsio import UserError, read_object


def committed_text(root: Path, name: str, record: object) -> str:
    """The part of a bank CSV that bank.json vouches for: its first `bytes` bytes, checked against the recorded
    row count and SHA-256 (rows appended after the last bank.json write belong to an unfinished image). A file
    that is shorter or differs was changed after `naturalize segment` wrote it: UserError."""
    path = root / name
    data = path.read_bytes() if path.is_file() else b""
    if record is None:  # a bank written before checksums were recorded
        return data.decode("utf-8")
    if not isinstance(record, dict) or not {"bytes", "rows", "sha256"} <= record.keys():
        raise UserError(
            f"{root / 'bank.json'} is damaged (its record of {name}); rebuild the bank with "
            f"`naturalize segment ... --out {root} --overwrite`"
        )
    head = data[: record["bytes"]]
    rows = max(0, head.count(b"\n") - 1)
    if len(data) < record["bytes"] or rows != record["rows"] or hashlib.sha256(head).hexdigest() != record["sha256"]:
        have = max(0, data.count(b"\n") - 1)
        raise UserError(
            f"{path} no longer matches its bank ({have} rows, bank.json records {record['rows']} and a "
            f"checksum): it was truncated or edited; rebuild the bank with `naturalize segment ... "
            f"--out {root} --overwrite`"
        )
    return head.decode("utf-8")


def file_record(meta: dict, name: str) -> object:
    """What bank.json records of one CSV ({bytes, rows, sha256}), None for a bank written before it did."""
    files = meta.get("files")
    return files.get(name) if isinstance(files, dict) else files


def read_bank_meta(root: Path) -> dict:
    """bank.json of `root` as a dict; UserError when it is missing, damaged or of another format version."""
    meta_path = root / "bank.json"
    if not meta_path.is_file():
        raise UserError(
            f"{root} is not a sprite bank (no bank.json); make one with `naturalize segment PBC_ROOT --out {root}`"
        )
    meta = read_object(meta_path, f"rebuild the bank with `naturalize segment ... --out {root} --overwrite`")
    if meta.get("format_version") not in READ_VERSIONS:
        raise UserError(
            f"{meta_path}: bank format version {meta.get('format_version')}, this naturalize reads "
            f"{' and '.join(map(str, READ_VERSIONS))}; "
            f"rebuild it with `naturalize segment ... --out {root} --overwrite`"
        )
    return meta


class FileSum:
    """Bytes, rows and running SHA-256 of one append-only bank CSV (what bank.json records of it)."""

    def __init__(self, data: bytes):
        self.bytes, self.rows, self.sha = 0, -1, hashlib.sha256()  # the header line is not a row
        self.add(data)

    def add(self, data: bytes) -> None:
        self.bytes += len(data)
        self.rows += data.count(b"\n")
        self.sha.update(data)

    def record(self) -> dict:
        return {"bytes": self.bytes, "rows": self.rows, "sha256": self.sha.hexdigest()}
