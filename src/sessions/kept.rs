//! Sessions kept across a restart: written to a file in the data directory when usher
//! stops (after draining), read back when it starts, so a deploy keeps every viewer.
//!
//! A session token verifies past its expiry only while its session is live on the node,
//! or with shared sessions on another (a VOD player keeps the URIs its playlist gave it for
//! the whole film); without this, a restart would refuse every viewer whose token expired,
//! and would forget the sessions that were ended or replaced, letting their tokens start
//! again. A `kill -9` or a crash writes nothing: those viewers start again only with an
//! unexpired token, or with shared sessions while Redis holds their session live.

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Session, Sessions};

/// Seconds a session token can verify past its session's last request under `config`: its
/// lifetime, plus the touch interval (the last request may not have been written yet) and
/// the clock skew allowed. Sessions are kept (and ended ones remembered) that long.
pub fn token_lifetime(config: &crate::config::Config) -> u64 {
    (config.token.session_ttl + config.sessions.touch_interval + config.token.clock_skew).as_secs()
}

/// The file's name in the data directory.
pub const FILE: &str = "sessions.json";

/// One session as the file keeps it.
#[derive(Serialize, Deserialize)]
struct Kept {
    sid: String,
    account: String,
    purchase: Option<String>,
    product: Option<String>,
    device: Option<String>,
    ip: IpAddr,
    started_at: u64,
    last_seen: u64,
    state: u8,
}

impl Sessions {
    /// Writes every session this node holds to `path` (a new file renamed over the old, for
    /// the owner only). Answers how many.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn save(&self, path: &Path) -> std::io::Result<usize> {
        let kept: Vec<Kept> = self
            .by_id
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|s| Kept {
                sid: s.sid.clone(),
                account: s.account.clone(),
                purchase: s.purchase.clone(),
                product: s.product.clone(),
                device: s.device.clone(),
                ip: s.ip,
                started_at: s.started_at,
                last_seen: s.last_seen(),
                state: s.state.load(Ordering::Relaxed),
            })
            .collect();
        let text = serde_json::to_vec(&kept).map_err(std::io::Error::other)?;
        let partial = path.with_extension("json.partial");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&partial)?;
        file.write_all(&text)?;
        file.sync_all()?;
        std::fs::rename(&partial, path)?;
        Ok(kept.len())
    }

    /// Takes back the sessions `path` holds that still matter at `now` (seen within
    /// `forget_after`, as the sweep keeps them), then removes the file, so an older one is
    /// never read twice. No file: nothing to do. Answers how many were taken back.
    ///
    /// # Errors
    /// When the file exists but cannot be read or parsed (it is left in place).
    pub fn restore(&self, path: &Path, now: u64, forget_after: u64) -> std::io::Result<usize> {
        let text = match std::fs::read(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let kept: Vec<Kept> = serde_json::from_slice(&text).map_err(std::io::Error::other)?;
        let keep_for = self.idle.max(forget_after);
        let mut sessions = self.by_id.write().unwrap_or_else(|p| p.into_inner());
        let mut restored = 0;
        for k in kept {
            if now >= k.last_seen.saturating_add(keep_for) || sessions.contains_key(&k.sid) {
                continue;
            }
            let session = Session {
                sid: k.sid,
                account: k.account,
                purchase: k.purchase,
                product: k.product,
                device: k.device,
                ip: k.ip,
                started_at: k.started_at,
                last_seen: AtomicU64::new(k.last_seen),
                state: AtomicU8::new(k.state),
            };
            sessions.insert(session.sid.clone(), Arc::new(session));
            restored += 1;
        }
        drop(sessions);
        std::fs::remove_file(path)?;
        Ok(restored)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{counter, registry, start, T0};
    use super::*;
    use crate::sessions::{Limits, SessionDenied, Touch};

    #[test]
    fn sessions_live_and_ended_come_back_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let before = registry();
        let mut sid = counter();
        let playing = before
            .start(start("tv", "P"), &Limits::default(), T0, &mut sid)
            .unwrap();
        let ended = before
            .start(start("phone", "P"), &Limits::default(), T0, &mut sid)
            .unwrap();
        assert!(before.end(&ended.sid));
        assert_eq!(
            before.touch(&playing.sid, None, None, T0 + 30),
            Ok(Touch::Live)
        );
        assert_eq!(before.save(&path).unwrap(), 2);

        let after = registry();
        assert_eq!(after.restore(&path, T0 + 40, 600).unwrap(), 2);
        assert!(!path.exists(), "read once");
        assert!(after.is_live(&playing.sid, T0 + 40), "still playing");
        assert_eq!(
            after.touch(&ended.sid, None, None, T0 + 40),
            Err(SessionDenied::Ended),
            "an ended session stays ended"
        );
        assert_eq!(after.restore(&path, T0 + 40, 600).unwrap(), 0, "no file");
    }

    #[test]
    fn sessions_forgotten_by_now_are_not_taken_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let before = registry();
        let s = before
            .start(start("tv", "P"), &Limits::default(), T0, counter())
            .unwrap();
        before.save(&path).unwrap();
        let after = registry();
        assert_eq!(after.restore(&path, T0 + 601, 600).unwrap(), 0);
        assert!(!after.is_live(&s.sid, T0 + 601));
    }
}
