//! The objects this thread served from the shield lately, in front of the shared cache:
//! a repeated request for one finds it without the cache's lookup, its key and its
//! bookkeeping shared between threads.
//!
//! Each serving thread keeps, in each of [`SLOTS`] slots chosen by a hash of the request's
//! group, path and upstream query, a weak reference to the last entry it served there. An
//! entry counts only while the cache still holds it (the weak reference holds nothing
//! alive: an entry the cache evicted is gone from here too), while it is fresh, and while
//! no purge came after it was taken from the cache. What a front costs is its slots (80
//! bytes each), their keys and, for an entry the cache let go, its emptied shell: under
//! 1 MiB a thread. Hits here do not tell the cache's eviction order that the entry was
//! used; the hit metrics count them as any other.

use std::sync::{Arc, Weak};
use std::time::Instant;

use super::entry::Entry;
use crate::slots::{slot_of, Slots};

/// Slots per thread: room for the objects a busy edge serves within a few seconds.
const SLOTS: usize = 4096;

/// What a slot holds: where the entry came from, what it answers, and the entry.
struct Slot {
    shield: u64,
    purges: u64,
    group: Arc<str>,
    path: Box<str>,
    query: Box<str>,
    entry: Weak<Entry>,
}

/// What a request asks the front for.
pub struct Ask<'a> {
    /// The shield's id (see [`super::Shield`]).
    pub shield: u64,
    /// Purges so far: an entry taken from the cache before the last one does not count.
    pub purges: u64,
    /// The upstream group's name.
    pub group: &'a str,
    /// The normalised path.
    pub path: &'a str,
    /// The upstream query, as written (another order of the same parameters misses here
    /// and finds the cache's entry).
    pub query: &'a str,
}

impl Ask<'_> {
    fn slot(&self) -> usize {
        slot_of(&[self.group, self.path, self.query], SLOTS)
    }

    fn answers(&self, slot: &Slot) -> bool {
        slot.shield == self.shield
            && slot.purges == self.purges
            && *slot.path == *self.path
            && *slot.query == *self.query
            && *slot.group == *self.group
    }
}

thread_local! {
    static FRONT: Slots<Slot> = Slots::new(SLOTS);
}

/// Serves `ask` with `serve` from this thread's front, if it knows a fresh entry for it
/// that the cache still holds.
pub fn serve<T>(ask: &Ask<'_>, now: Instant, serve: impl FnOnce(&Entry) -> T) -> Option<T> {
    let slot = ask.slot();
    let entry = FRONT.with(|front| {
        front.read(slot, |s| {
            ask.answers(s).then(|| s.entry.upgrade()).flatten()
        })
    })?;
    entry.is_fresh(now).then(|| serve(&entry))
}

/// Remembers `entry` (fresh, just served from the cache) for `ask`.
pub fn keep(ask: &Ask<'_>, group: &Arc<str>, entry: &Arc<Entry>) {
    let slot = ask.slot();
    FRONT.with(|front| {
        front.put(
            slot,
            Slot {
                shield: ask.shield,
                purges: ask.purges,
                group: group.clone(),
                path: ask.path.into(),
                query: ask.query.into(),
                entry: Arc::downgrade(entry),
            },
        )
    });
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use http::{HeaderMap, StatusCode};

    use super::*;
    use crate::shield::entry::Head;
    use crate::shield::policy::Lifetime;

    fn entry(len: usize, fresh: Duration) -> Arc<Entry> {
        Arc::new(Entry {
            head: Arc::new(Head {
                status: StatusCode::OK,
                headers: HeaderMap::new(),
            }),
            body: Bytes::from(vec![b'x'; len]),
            len: len as u64,
            stored: Instant::now(),
            lifetime: Lifetime {
                fresh,
                stale: Duration::ZERO,
            },
        })
    }

    fn ask<'a>(path: &'a str, query: &'a str, purges: u64) -> Ask<'a> {
        Ask {
            shield: 7,
            purges,
            group: "",
            path,
            query,
        }
    }

    fn served(ask: &Ask<'_>, at: Instant) -> Option<u64> {
        serve(ask, at, |entry| entry.len)
    }

    #[test]
    fn a_kept_entry_answers_only_its_own_request_while_fresh_unpurged_and_cached() {
        let now = Instant::now();
        let group: Arc<str> = Arc::from("");
        let first = ask("/vod/a/1.m4s", "_HLS_msn=3", 0);
        // The cache's reference: the front holds none of its own.
        let cached = entry(1000, Duration::from_secs(60));
        keep(&first, &group, &cached);
        assert_eq!(served(&first, now), Some(1000));
        assert_eq!(served(&ask("/vod/a/1.m4s", "_HLS_msn=4", 0), now), None);
        assert_eq!(served(&ask("/vod/a/2.m4s", "_HLS_msn=3", 0), now), None);
        assert_eq!(
            served(&ask("/vod/a/1.m4s", "_HLS_msn=3", 1), now),
            None,
            "a purge came after it was kept"
        );
        let other_shield = Ask { shield: 8, ..first };
        assert_eq!(served(&other_shield, now), None);
        let other_group = Ask {
            group: "backup",
            ..ask("/vod/a/1.m4s", "_HLS_msn=3", 0)
        };
        assert_eq!(served(&other_group, now), None);
        assert_eq!(
            served(&first, now + Duration::from_secs(61)),
            None,
            "no longer fresh"
        );
        assert_eq!(served(&first, now), Some(1000));
        drop(cached);
        assert_eq!(served(&first, now), None, "the cache let it go");
    }
}
