"""Turning what the disk and LMDB say into logstore errors a person can act on.

A full disk or an exceeded quota (ENOSPC, EDQUOT, EFBIG; LMDB's MDB_MAP_FULL) is
`StorageFull` (HTTP 507: free space, then retry); any other failure is `StorageError`
(HTTP 503). Each names the topic and what was being done.
"""

from __future__ import annotations

import errno
import os

import lmdb

from ...errors import StorageError, StorageFull

SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_SPACE_TEXTS = tuple(os.strerror(code) for code in SPACE_ERRNOS)  # LMDB's C binding says
# only "mdb_txn_commit: Disk quota exceeded": the error number is not kept


def is_space(exc: BaseException) -> bool:
    """Whether `exc` says the disk or a quota is full."""
    if isinstance(exc, OSError):
        return exc.errno in SPACE_ERRNOS
    if isinstance(exc, lmdb.DiskError | lmdb.MapFullError):
        return True
    return isinstance(exc, lmdb.Error) and any(text in str(exc) for text in _SPACE_TEXTS)


def storage_error(topic_id: str, exc: BaseException, doing: str) -> StorageError:
    """The logstore error for an `OSError` or `lmdb.Error` met while `doing` something."""
    if is_space(exc):
        code = exc.errno if isinstance(exc, OSError) else None
        why = os.strerror(code) if code else str(exc)
        return StorageFull(topic_id, f"{why} while {doing}")
    return StorageError(topic_id, f"{exc} while {doing}")
