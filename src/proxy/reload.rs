//! The configuration in force and its reload: what a running usher swaps in, what waits
//! for a restart, and the signing keys a reload retires.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::State;
use crate::config::Config;
use crate::ticket::KeyRing;

impl State {
    /// The configuration in force: a snapshot each request takes once, so a reload never
    /// changes the rules in the middle of one.
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Keys removed by reloads since the start: they verify session tokens they signed
    /// before their removal, never tickets (see `authorize`).
    pub fn retired_keys(&self) -> Arc<Vec<RetiredKey>> {
        self.retired
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Re-reads the config file and swaps in what may change while running: the HTTPS
    /// certificate (the files at the configured paths, read again), `[token]`
    /// (keys, lifetimes, skew, parameters), `[access]`, `[[routes]]`, `[secure_link]`,
    /// `[akamai]`, `[media_cdn]`, `[webhooks]`, `[playlists]`. Listeners, upstreams, the shield, store, rights and
    /// sessions keep their running values until a restart. A config with any problem is
    /// rejected whole and the old one keeps serving. Keys the new config drops are kept as
    /// [`RetiredKey`]s.
    ///
    /// Answers the changed settings it could not apply, by dotted key, so a reload never
    /// ignores a change silently.
    ///
    /// # Errors
    /// The problems, each by key.
    pub fn reload(&self) -> Result<Reloaded, crate::config::ConfigError> {
        let Some((path, overrides)) = self.source.get() else {
            return Err(crate::config::ConfigError::Invalid(vec![
                "no config file to reload from".to_owned(),
            ]));
        };
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        let result = crate::config::load(path, overrides);
        let outcome = if result.is_ok() { "ok" } else { "rejected" };
        self.metrics
            .config_reloads
            .with_label_values(&[outcome])
            .inc();
        let mut fresh = result?;
        let current = self.config();
        let mut restart_required =
            crate::config::changes::restart_required(&current.file, &fresh.file);
        fresh.file = Arc::new(crate::config::changes::in_force(&current.file, &fresh.file));
        // A renewal writes new files at the same paths: presented from the next handshake.
        // (Other paths are a listener change, listed for a restart.)
        let renewed = match (&fresh.listen.https, &current.listen.https) {
            (Some(new), Some(old)) if new.cert == old.cert && new.key == old.key => {
                Some(new.certified.clone())
            }
            _ => None,
        };
        fresh.listen = current.listen.clone();
        fresh.admin = current.admin.clone();
        fresh.upstream = current.upstream.clone();
        fresh.upstream_groups = current.upstream_groups.clone();
        fresh.shield = current.shield.clone();
        for (n, route) in fresh.routes.iter_mut().enumerate() {
            let known = route
                .upstream
                .as_ref()
                .is_none_or(|name| current.upstream_groups.iter().any(|(g, _)| g == name));
            if !known {
                tracing::warn!(
                    prefix = %route.prefix,
                    "routes[].upstream names a group added by the reload; [upstream] serves it until a restart"
                );
                route.upstream = None;
                restart_required.push(format!("routes[{n}].upstream"));
            }
        }
        fresh.data_dir = current.data_dir.clone();
        fresh.rights = current.rights.clone();
        fresh.sessions = current.sessions.clone();
        fresh.demo = current.demo.clone();
        // Keys taken out stop verifying tickets at once, so no session starts under them;
        // the session tokens they signed go on (a player reloads the playlist URI its
        // master gave it, with the token of that moment) until they expire or their
        // session ends.
        let now = (self.clock)();
        // Nothing it signed before now expires later than this; a token claiming a later
        // expiry was made after the retirement. Session tokens are minted for the
        // session_ttl of the config in force, which may have been longer before an earlier
        // reload. And a playlist request that took its config before this reload signs
        // with the old key when its answer is ready: as late as its upstream fetch allows.
        let ttl = self
            .longest_session_ttl
            .fetch_max(current.token.session_ttl.as_secs(), Ordering::AcqRel)
            .max(current.token.session_ttl.as_secs());
        let latest_exp = now + ttl + longest_fetch(&current).as_secs() + 1;
        let mut retired: Vec<RetiredKey> = self
            .retired_keys()
            .iter()
            .filter(|r| r.ring.missing_from(&fresh.token.keys).len() == 1)
            .cloned()
            .collect();
        for key in current.token.keys.missing_from(&fresh.token.keys) {
            if let Some(ring) = KeyRing::of(vec![key]) {
                retired.push(RetiredKey {
                    ring: Arc::new(ring),
                    latest_exp,
                });
            }
        }
        *self.retired.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(retired);
        self.webhooks.configure(fresh.webhooks.clone());
        if let (Some(certificate), Some(renewed)) = (self.certificate.get(), renewed) {
            certificate.replace(renewed);
        }
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(fresh);
        Ok(Reloaded { restart_required })
    }
}

/// The longest an upstream fetch under `config` can take: every server of a group in
/// turn, each waiting for a slot and then for its whole answer.
fn longest_fetch(config: &Config) -> std::time::Duration {
    std::iter::once(&config.upstream)
        .chain(config.upstream_groups.iter().map(|(_, group)| group))
        .map(|group| {
            group
                .servers()
                .iter()
                .map(|server| server.timeout + server.total_timeout)
                .sum::<std::time::Duration>()
        })
        .max()
        .unwrap_or_default()
}

/// What a reload did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reloaded {
    /// Changed settings that keep their running values until a restart, by dotted key
    /// (`sessions.idle_timeout`, `listen.http`). Everything else changed took effect.
    pub restart_required: Vec<String>,
}

/// A key a reload removed: a ring of it alone, and the latest expiry a session token it
/// signed before its removal can carry.
#[derive(Clone)]
pub struct RetiredKey {
    /// The key.
    pub ring: Arc<KeyRing>,
    /// Retirement time plus the longest session-token lifetime in force since the start
    /// and the longest an upstream fetch can take.
    pub latest_exp: u64,
}
