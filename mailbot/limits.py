"""Resource limits applied to untrusted input (mail, attachments, archives, sheets)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Limits(BaseModel):
    """Bounds on what one message may make mailbot read.  Every key is configurable under
    ``[limits]`` in the config file; defaults suit the Annex 3 campaign."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_message_bytes: int = Field(40 * 1024 * 1024, gt=0, description="raw size of one message")
    max_attachments: int = Field(20, gt=0, description="attachments considered per message")
    max_attachment_bytes: int = Field(25 * 1024 * 1024, gt=0, description="size of one attachment")
    max_uncompressed_bytes: int = Field(
        100 * 1024 * 1024, gt=0, description="total uncompressed size of any zip, xlsx included"
    )
    max_compression_ratio: float = Field(
        200.0, gt=1, description="uncompressed/compressed ratio above which a zip is a bomb"
    )
    max_zip_members: int = Field(2000, gt=0, description="members in one zip container")
    max_rows: int = Field(10_000, gt=0, description="data rows read from one sheet")
    max_columns: int = Field(200, gt=0, description="columns scanned in one sheet")
    max_nesting: int = Field(3, ge=0, description="depth of zips and forwarded messages")
    max_seconds_per_message: float = Field(30.0, gt=0, description="wall time for one message")


DEFAULT_LIMITS = Limits()
