//! Seconds into a media playlist, for preview mode.
//!
//! A live playlist is a window that slides along the stream: its first segment is not the
//! stream's. The segments before the window (`EXT-X-MEDIA-SEQUENCE` of them) and those a
//! delta update skips (`EXT-X-SKIP`) count at the target duration each, which no segment
//! exceeds, so a preview never runs past its seconds of the stream however the window
//! has moved: a viewer reloading a live playlist without a ticket does not get the next
//! window's first seconds, and the next, and so the whole event. A playlist that says it
//! never slides (`EXT-X-PLAYLIST-TYPE` `VOD` or `EVENT`) starts at the stream's start
//! whatever its sequence number.

/// Seconds into a media playlist's stream, from the `EXTINF` durations.
#[derive(Debug, Default)]
pub(super) struct Timeline {
    /// Start of the segment being described (read it by [`Timeline::now`]).
    elapsed: f64,
    /// Duration of that segment, from its `EXTINF`.
    pending: f64,
    /// `EXT-X-TARGETDURATION`, 0 until seen.
    target: f64,
    /// `EXT-X-MEDIA-SEQUENCE`: the segments of the stream before the window.
    before: u64,
    /// `EXT-X-PLAYLIST-TYPE` `VOD` or `EVENT`: the window is the stream from its start.
    whole: bool,
    /// Whether the window's first segment has been placed in the stream.
    placed: bool,
}

impl Timeline {
    /// A segment's duration from its `EXTINF`. One that is not a positive number (`-1`,
    /// `0`, `inf`, junk) counts as the target duration, or as reaching past any preview
    /// when there is none: otherwise it would stop or turn back the clock, and a preview
    /// would run on to the end. The first one places the window in the stream.
    pub(super) fn next_duration(&mut self, extinf: &str) {
        self.place();
        let number = first_number(extinf);
        self.pending = match number.parse::<f64>() {
            Ok(seconds) if seconds.is_finite() && seconds > 0.0 => seconds,
            _ if self.target > 0.0 => self.target,
            _ => f64::INFINITY,
        };
    }

    /// The playlist's `EXT-X-TARGETDURATION` tag.
    pub(super) fn target(&mut self, tag: &str) {
        self.target = first_number(tag)
            .parse::<f64>()
            .ok()
            .filter(|t| t.is_finite() && *t > 0.0)
            .unwrap_or(0.0);
    }

    /// The playlist's `EXT-X-MEDIA-SEQUENCE` tag (junk counts as none).
    pub(super) fn media_sequence(&mut self, tag: &str) {
        self.before = first_number(tag).parse().unwrap_or(0);
    }

    /// The playlist's `EXT-X-PLAYLIST-TYPE` tag.
    pub(super) fn playlist_type(&mut self, tag: &str) {
        self.whole = matches!(first_number(tag), "VOD" | "EVENT");
    }

    /// An `EXT-X-SKIP` tag: its `SKIPPED-SEGMENTS` lie before the next segment.
    pub(super) fn skip(&mut self, tag: &str) {
        let skipped = tag
            .split_once("SKIPPED-SEGMENTS=")
            .map_or("", |(_, rest)| rest.split(',').next().unwrap_or(""))
            .trim()
            .parse::<u64>()
            // Unreadable: as if it skipped past any preview.
            .unwrap_or(u64::MAX);
        self.elapsed += self.at_target(skipped);
    }

    /// Seconds into the stream of what the playlist describes now: a segment, or the
    /// parts, maps and keys before its `EXTINF` (LL-HLS writes a segment's parts first).
    pub(super) fn now(&mut self) -> f64 {
        self.place();
        self.elapsed
    }

    /// Places the window in the stream, once: before anything in it is judged.
    fn place(&mut self) {
        if !self.placed {
            self.placed = true;
            if !self.whole && self.before > 0 {
                self.elapsed += self.at_target(self.before);
            }
        }
    }

    /// The segment's URI line: the next one starts where this one ends.
    pub(super) fn segment_done(&mut self) {
        self.elapsed += self.pending;
        self.pending = 0.0;
    }

    /// `segments` at the target duration each; past any preview when it is unknown.
    fn at_target(&self, segments: u64) -> f64 {
        if segments == 0 {
            0.0
        } else if self.target > 0.0 {
            segments as f64 * self.target
        } else {
            f64::INFINITY
        }
    }
}

/// What follows a tag's `:` up to the first `,`, trimmed.
fn first_number(tag: &str) -> &str {
    let value = tag.split_once(':').map_or("", |(_, v)| v);
    value.split(',').next().unwrap_or("").trim()
}
