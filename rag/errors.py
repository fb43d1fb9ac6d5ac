"""Errors a user can meet. Each message names the file/setting and what to do.

RagError
 ├── IngestError        a file cannot be read (unsupported, empty, encrypted, corrupt)
 ├── ModelError         the embedding model or LLM cannot be found, verified or loaded
 ├── IndexMissingError  no index built yet
 ├── IndexMismatchError index built with another model/settings, or files altered
 ├── BackendUnavailable an answer backend is not installed/configured
 ├── InputError         a bad question or request parameter
 ├── NotFoundError      a requested document page does not exist (or its source file is gone)
 ├── StorageError       the disk refused a read or write (permissions, read-only, full)
 └── RequestTimeout     a request ran past its wall-clock budget (RAG_REQUEST_TIMEOUT_S)
"""

import errno


class RagError(Exception):
    """Base class: the message is one line a user can act on.

    Line breaks (e.g. inside a file name) are shown escaped so the message stays one line.
    """

    def __init__(self, message: object = "") -> None:
        text = str(message).replace("\r", "\\r").replace("\n", "\\n")
        super().__init__(text)


class IngestError(RagError):
    pass


class ModelError(RagError):
    pass


class IndexMissingError(RagError):
    pass


class IndexMismatchError(RagError):
    pass


class BackendUnavailable(RagError):
    pass


class InputError(RagError):
    pass


class NotFoundError(RagError):
    pass


class StorageError(RagError):
    """An ``OSError`` from the disk, as one line naming the path, the reason and the fix."""


_OS_REASONS = {
    errno.EACCES: "权限不足",
    errno.EPERM: "权限不足",
    errno.EROFS: "文件系统是只读的",
    errno.ENOSPC: "磁盘空间不足",
    errno.EDQUOT: "超出磁盘配额",
    errno.EFBIG: "文件超过了允许的大小",
    errno.ENOTDIR: "路径中有一段是文件而不是文件夹",
    errno.EISDIR: "这是文件夹而不是文件",
    errno.ENOENT: "不存在",
    errno.EEXIST: "已存在同名文件",
    errno.EIO: "磁盘读写出错",
    errno.ENAMETOOLONG: "路径太长",
    errno.ELOOP: "符号链接形成了循环",
}


def os_reason(exc: OSError) -> str:
    """A short Chinese reason for an ``OSError`` (its errno), e.g. "权限不足"."""
    return _OS_REASONS.get(exc.errno or 0) or exc.strerror or type(exc).__name__


def storage_error(exc: OSError, action: str, path: object, fix: str) -> StorageError:
    """``无法<action> <path>：<reason>；<fix>`` - ``path`` is the one the caller was working on,
    or the file the error names when that is more precise."""
    where = exc.filename if exc.filename not in (None, "") else path
    return StorageError(f"无法{action} {where}：{os_reason(exc)}；{fix}")


class RequestTimeout(RagError):
    pass
