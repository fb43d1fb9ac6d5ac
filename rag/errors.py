"""Errors a user can meet. Each message names the file/setting and what to do.

RagError
 ├── IngestError        a file cannot be read (unsupported, empty, encrypted, corrupt)
 ├── ModelError         the embedding model or LLM cannot be found, verified or loaded
 ├── IndexMissingError  no index built yet
 ├── IndexMismatchError index built with another model/settings, or files altered
 ├── BackendUnavailable an answer backend is not installed/configured
 ├── InputError         a bad question or request parameter
 └── RequestTimeout     a request ran past its wall-clock budget (RAG_REQUEST_TIMEOUT_S)
"""


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


class RequestTimeout(RagError):
    pass
