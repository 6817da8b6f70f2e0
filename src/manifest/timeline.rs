//! Seconds into a media playlist, for preview mode.
//!
//! A live playlist is a window that slides along the stream: its first segment is not the
//! stream's. The segments before the window (`EXT-X-MEDIA-SEQUENCE` of them) and those a
//! delta update skips (`EXT-X-SKIP`) count at the target duration each, so a preview does
//! not run on with the window: a viewer reloading a live playlist without a ticket does
//! not get the next window's first seconds, and the next, and so the whole event. A
//! playlist that says it never slides (`EXT-X-PLAYLIST-TYPE` `VOD` or `EVENT`) starts at
//! the stream's start whatever its sequence number. The playlist's own tags are read
//! whenever they come: where the window lies is worked out anew each time a URI is
//! judged, so a key or map written before `EXT-X-MEDIA-SEQUENCE` places nothing.
//!
//! A playlist of byte ranges (`EXT-X-BYTERANGE`, or a `BYTERANGE` attribute) names one file
//! for many segments, and a preview token names whole paths: from the first range on,
//! nothing is in the preview, or the token would open the whole file.

/// Seconds into a media playlist's stream, from the `EXTINF` durations.
#[derive(Debug, Default)]
pub(super) struct Timeline {
    /// The durations of the window's segments before the one being described.
    elapsed: f64,
    /// Duration of that segment, from its `EXTINF`.
    pending: f64,
    /// `EXT-X-TARGETDURATION`, 0 until seen.
    target: f64,
    /// `EXT-X-MEDIA-SEQUENCE`: the segments of the stream before the window.
    before: u64,
    /// `EXT-X-SKIP`: segments of the window a delta update leaves out.
    skipped: u64,
    /// `EXT-X-PLAYLIST-TYPE` `VOD` or `EVENT`: the window is the stream from its start.
    whole: bool,
    /// A byte range was seen: past any preview from here on.
    ranged: bool,
}

impl Timeline {
    /// Reads a tag of the playlist named `name` (the whole tag is `tag`) that may move
    /// the clock or place the window.
    pub(super) fn tag(&mut self, name: &str, tag: &str) {
        match name {
            "EXTINF" => self.next_duration(tag),
            "EXT-X-TARGETDURATION" => self.target(tag),
            "EXT-X-MEDIA-SEQUENCE" => self.media_sequence(tag),
            "EXT-X-PLAYLIST-TYPE" => self.playlist_type(tag),
            "EXT-X-SKIP" => self.skip(tag),
            "EXT-X-BYTERANGE" => self.ranged = true,
            // `EXT-X-MAP` and `EXT-X-PART` name ranges by attribute.
            _ if tag.contains("BYTERANGE=") => self.ranged = true,
            _ => {}
        }
    }

    /// A segment's duration from its `EXTINF`. One that is not a positive number (`-1`,
    /// `0`, `inf`, junk) counts as the target duration, or as reaching past any preview
    /// when there is none: otherwise it would stop or turn back the clock, and a preview
    /// would run on to the end.
    fn next_duration(&mut self, extinf: &str) {
        let number = first_number(extinf);
        self.pending = match number.parse::<f64>() {
            Ok(seconds) if seconds.is_finite() && seconds > 0.0 => seconds,
            _ if self.target > 0.0 => self.target,
            _ => f64::INFINITY,
        };
    }

    /// The playlist's `EXT-X-TARGETDURATION` tag.
    fn target(&mut self, tag: &str) {
        self.target = first_number(tag)
            .parse::<f64>()
            .ok()
            .filter(|t| t.is_finite() && *t > 0.0)
            .unwrap_or(0.0);
    }

    /// The playlist's `EXT-X-MEDIA-SEQUENCE` tag (junk counts as none).
    fn media_sequence(&mut self, tag: &str) {
        self.before = first_number(tag).parse().unwrap_or(0);
    }

    /// The playlist's `EXT-X-PLAYLIST-TYPE` tag.
    fn playlist_type(&mut self, tag: &str) {
        self.whole = matches!(first_number(tag), "VOD" | "EVENT");
    }

    /// An `EXT-X-SKIP` tag: its `SKIPPED-SEGMENTS` lie before the next segment.
    fn skip(&mut self, tag: &str) {
        let skipped = tag
            .split_once("SKIPPED-SEGMENTS=")
            .map_or("", |(_, rest)| rest.split(',').next().unwrap_or(""))
            .trim()
            .parse::<u64>()
            // Unreadable: as if it skipped past any preview.
            .unwrap_or(u64::MAX);
        self.skipped = self.skipped.saturating_add(skipped);
    }

    /// Seconds into the stream of what the playlist describes now: a segment, or the
    /// parts, maps and keys before its `EXTINF` (LL-HLS writes a segment's parts first).
    pub(super) fn now(&self) -> f64 {
        if self.ranged {
            return f64::INFINITY;
        }
        let before = if self.whole { 0 } else { self.before };
        self.elapsed + self.at_target(before.saturating_add(self.skipped))
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
