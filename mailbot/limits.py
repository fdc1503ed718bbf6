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
    max_seconds_per_message: float = Field(
        30.0, gt=0, description="wall time for one message, from fetch to decision")
    max_cells_per_message: int = Field(
        4_000_000, gt=0, description="sheet cells (bounding boxes) over all sheets of all attachments")
    max_header_count: int = Field(2000, gt=0, description="header fields of one message")
    max_header_bytes: int = Field(1024 * 1024, gt=0, description="bytes of one message's header section")
    max_mime_parts: int = Field(1000, gt=0, description="MIME parts (boundary lines) in one message")
    max_mime_depth: int = Field(24, gt=0, description="multipart containers open inside one another")
    reader_workers: int = Field(1, gt=0, le=8, description="reader worker processes kept warm")
    reader_memory_bytes: int = Field(
        512 * 1024 * 1024, ge=128 * 1024 * 1024, description="address space of one reader worker")
    reader_cpu_seconds: int = Field(60, gt=0, description="CPU seconds of one contained read")
    reader_max_result_bytes: int = Field(
        96 * 1024 * 1024, gt=0, description="pickled result of one contained read")


DEFAULT_LIMITS = Limits()
