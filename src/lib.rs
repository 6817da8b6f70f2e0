//! usher: an edge streaming gateway with pay-per-view access control for HLS.
//!
//! Every playlist and segment request is checked against a signed ticket or session token;
//! playlists are rewritten so every URI carries a session token; content is fetched from
//! one configured origin and streamed back. The request flow is charted in [`proxy`].
//!
//! - [`config`]: the TOML file, checked into runtime types.
//! - [`ticket`]: tickets and session tokens, signing and verification, the key ring.
//! - [`access`]: the pure per-request decision.
//! - [`manifest`]: playlist rewriting, pure text in and out.
//! - [`mapped`]: bodies in files of their own, for `sendfile`.
//! - [`path`]: request path normalisation and object kinds.
//! - [`origin`]: origin base URLs and matching absolute URIs against them.
//! - [`net`]: IP prefixes for address binding.
//! - [`open_files`]: the limit on open files, raised at start-up.
//! - [`device`]: hashed device identity.
//! - [`sessions`]: live playback sessions, concurrency limits and idle timeouts.
//! - [`form`]: query-string and form decoding.
//! - [`rights`]: products, media, purchases, the store and the cached rights check.
//! - [`proxy`]: the request flow, the server, the upstream and responses.
//! - [`admin`]: the admin listener: metrics, health, the admin API and the PPV facade.
//! - [`metrics`]: Prometheus metrics.
//! - [`tls`]: rustls server configuration from PEM files.
//! - [`signal`]: control inputs (SIGTERM, SIGINT) as one enum.
//! - [`cli`]: the command line.
//! - [`clock`]: the wall clock as Unix seconds.
//! - [`demo`]: selling the bundled demo stream at start-up.
//! - [`webhooks`]: signed HTTP callbacks on PPV events, from a queue persisted in the store.

pub mod access;
pub mod admin;
pub mod cli;
pub mod clock;
pub mod config;
pub mod data_dir;
pub mod demo;
pub mod device;
pub mod fanout;
pub mod form;
pub mod manifest;
pub mod mapped;
pub mod metrics;
pub mod net;
pub mod open_files;
pub mod origin;
pub mod path;
pub mod proxy;
pub mod rights;
pub mod sessions;
pub mod shield;
pub mod signal;
pub mod slots;
pub mod ticket;
pub mod tls;
pub mod webhooks;
