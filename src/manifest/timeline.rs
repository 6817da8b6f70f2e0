//! Seconds into a media playlist, for preview mode.

/// Seconds into a media playlist, from the `EXTINF` durations.
#[derive(Debug, Default)]
pub(super) struct Timeline {
    /// Start of the segment being described.
    pub(super) elapsed: f64,
    /// Duration of that segment, from its `EXTINF`.
    pending: f64,
    /// `EXT-X-TARGETDURATION`, 0 until seen.
    target: f64,
}

impl Timeline {
    /// A segment's duration from its `EXTINF`. One that is not a positive number (`-1`,
    /// `0`, `inf`, junk) counts as the target duration, or as reaching past any preview
    /// when there is none: otherwise it would stop or turn back the clock, and a preview
    /// would run on to the end.
    pub(super) fn next_duration(&mut self, extinf: &str) {
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

    /// The segment's URI line: the next one starts where this one ends.
    pub(super) fn segment_done(&mut self) {
        self.elapsed += self.pending;
        self.pending = 0.0;
    }
}

/// What follows a tag's `:` up to the first `,`, trimmed.
fn first_number(tag: &str) -> &str {
    let value = tag.split_once(':').map_or("", |(_, v)| v);
    value.split(',').next().unwrap_or("").trim()
}
