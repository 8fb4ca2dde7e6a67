//! Live feeds: connection slots, keep-alive, reconnect, rotation (filled in by the live-feeds work).
