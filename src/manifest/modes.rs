//! The rewriting modes a [`super::Rewrite`] may ask for beside the shared token: per-URI
//! credentials and preview.

/// Per-URI credentials, for formats whose MAC covers the path (nginx `secure_link`): each
/// URI to tokenize gets the query `mint` returns for its normalised path, instead of the
/// shared `param=token`.
#[derive(Clone, Copy)]
pub struct PerPath<'a> {
    /// Normalised path of the playlist being rewritten, to resolve relative URIs against.
    pub playlist_path: &'a str,
    /// The query to append for a path (`md5=…&expires=…`).
    pub mint: &'a dyn Fn(&str) -> String,
}

impl std::fmt::Debug for PerPath<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PerPath")
            .field("playlist_path", &self.playlist_path)
            .finish_non_exhaustive()
    }
}

/// Preview mode, for a viewer without a ticket: in a media playlist only the segments that
/// start within the first `seconds` (and the init sections, keys and parts among them) get
/// the token; later ones are left without, so they do not play. Every playlist URI of a
/// master is kept playable. [`super::Rewritten::allowed`] lists the normalised paths that got the
/// token, for the preview token to name exactly.
#[derive(Debug, Clone, Copy)]
pub struct Preview<'a> {
    /// Preview length in seconds.
    pub seconds: u32,
    /// Normalised path of the playlist being rewritten, to resolve relative URIs against.
    pub playlist_path: &'a str,
}
