//! Why a playlist cannot be rewritten.

use super::AssetListError;

/// Why a playlist cannot be rewritten. The proxy answers 502: a playlist that cannot be
/// rewritten is never passed through untokenized.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Not UTF-8.
    #[error("playlist is not UTF-8")]
    NotUtf8,
    /// The first line is not `#EXTM3U`.
    #[error("playlist does not start with #EXTM3U")]
    NoHeader,
    /// An attribute list that does not parse, on a tag whose URI must be rewritten.
    #[error("line {line}: malformed attribute list")]
    BadAttributes {
        /// 1-based line number.
        line: usize,
    },
    /// An `EXT-X-DEFINE` that names a variable defined before, or takes one from a query
    /// parameter the playlist request does not carry (credentials are not counted).
    /// Players differ on the first (hls.js keeps the first value) and must refuse the
    /// second (RFC 8216bis 4.4.2.3).
    #[error("line {line}: EXT-X-DEFINE {name}: {why}")]
    BadDefine {
        /// 1-based line number.
        line: usize,
        /// The variable.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A carriage return that does not end a line: some players end the line there,
    /// others read on, so the two would not agree on what the URI is.
    #[error("line {line}: carriage return inside a line")]
    LoneCarriageReturn {
        /// 1-based line number.
        line: usize,
    },
    /// The rewritten playlist would pass `max_output` bytes.
    #[error("rewritten playlist passes {limit} bytes")]
    OutputTooLarge {
        /// The limit.
        limit: usize,
    },
    /// An asset list that is not JSON, or whose assets are not as the spec makes them.
    #[error("asset list: {0}")]
    AssetList(#[from] AssetListError),
    /// `EXT-X-STREAM-INF` with no URI line after it.
    #[error("line {line}: EXT-X-STREAM-INF without a URI")]
    MissingVariantUri {
        /// 1-based line number of the tag.
        line: usize,
    },
}
