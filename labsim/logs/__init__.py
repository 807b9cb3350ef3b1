"""Exchange-format transport logs: SMTP protocol logs and the message tracking log.

csvfmt (Exchange's CSV escaping) -> logfile (buffered hourly files with the Exchange header) ->
protocol_log / message_tracking (the log types) + protocol_text (Exchange's exact strings).
"""

from __future__ import annotations

from .csvfmt import escape, join
from .logfile import LogStream
from .message_tracking import (
    MESSAGE_TRACKING_FIELDS,
    MessageTrackingLog,
    message_tracking_folder,
)
from .protocol_log import (
    PROTOCOL_LOG_FIELDS,
    ProtocolLog,
    SessionWriter,
    protocol_log_folder,
)

__all__ = [
    "escape", "join", "LogStream", "MESSAGE_TRACKING_FIELDS", "MessageTrackingLog",
    "message_tracking_folder", "PROTOCOL_LOG_FIELDS", "ProtocolLog", "SessionWriter",
    "protocol_log_folder",
]
