"""The one exception type of the SDK."""

from __future__ import annotations

from typing import Any


class BitacoraError(Exception):
    """A request bitacora refused, or one that could not reach it.

    `code`, `message` and `field` are the server's (`{"error": {"code", "message", "field"}}`);
    `status` is the HTTP status, or `None` when no response came back (then `code` is
    `network_error` or `timeout`). `retryable` says whether the SDK's sender would have retried it.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str = "error",
        field: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.status = status
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return (
            is_retryable_status(self.status)
            if self.status is not None
            else (self.code in ("network_error", "timeout"))
        )

    def __str__(self) -> str:
        where = f" (field {self.field})" if self.field else ""
        status = f"{self.status} " if self.status is not None else ""
        return f"{status}{self.code}: {self.message}{where}"

    def __repr__(self) -> str:
        return (
            f"BitacoraError(code={self.code!r}, message={self.message!r}, "
            f"field={self.field!r}, status={self.status!r})"
        )

    @classmethod
    def from_detail(cls, detail: Any, status: int | None) -> BitacoraError:
        """Builds the error from a server `{"code","message","field"}` object (or anything)."""
        if isinstance(detail, dict):
            return cls(
                str(detail.get("message") or "request refused"),
                code=str(detail.get("code") or "error"),
                field=detail.get("field") if isinstance(detail.get("field"), str) else None,
                status=status,
            )
        return cls("request refused", status=status)


class VerificationError(BitacoraError):
    """An event, proof or checkpoint that does not verify: the log or the event was altered,
    or it was not signed by the key you trusted."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="verification_failed")


def is_retryable_status(status: int) -> bool:
    """Network errors, 408, 429 and 5xx are worth retrying; any other 4xx will fail again."""
    return status in (408, 429) or status >= 500
