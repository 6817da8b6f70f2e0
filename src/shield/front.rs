//! The objects this thread served from the shield lately, in front of the shared cache:
//! a repeated request for one finds it without the cache's lookup, its key and its
//! bookkeeping shared between threads.
//!
//! Each serving thread keeps, in each of [`SLOTS`] slots chosen by a hash of the request's
//! group, path and upstream query, a weak reference to the last entry it served there. An
//! entry counts only while the cache still holds it (the weak reference holds nothing
//! alive: an entry the cache evicted is gone from here too), while it is fresh, and while
//! no purge came after it was taken from the cache. What a front costs is its slots (88
//! bytes each), their keys and, for an entry the cache let go, its emptied shell: under
//! 1 MiB a thread. The hit metrics count hits here as any other.
//!
//! A hit here does not tell the cache's eviction order that the entry was used, so a slot
//! answers for [`REFRESH`] after it was taken from the cache and then sends the next
//! request to the cache again, which marks the entry used and puts it back here. Without
//! that, the objects served most (all from fronts) would look the least used to the cache
//! and be the first evicted when it is full, to be fetched from the upstream again.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::entry::Entry;
use crate::slots::{slot_of, Slots};

/// Slots per thread: room for the objects a busy edge serves within a few seconds.
const SLOTS: usize = 4096;

/// How long a slot answers before the next request for its object goes to the cache.
pub const REFRESH: Duration = Duration::from_secs(1);

/// What a slot holds: where the entry came from, what it answers, and the entry.
struct Slot {
    shield: u64,
    purges: u64,
    group: Arc<str>,
    path: Box<str>,
    query: Box<str>,
    entry: Weak<Entry>,
    /// When the entry was taken from the cache.
    taken: Instant,
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
/// that the cache still holds and took from the cache less than [`REFRESH`] ago.
pub fn serve<T>(ask: &Ask<'_>, now: Instant, serve: impl FnOnce(&Entry) -> T) -> Option<T> {
    let slot = ask.slot();
    let entry = FRONT.with(|front| {
        front.read(slot, |s| {
            (ask.answers(s) && now.saturating_duration_since(s.taken) < REFRESH)
                .then(|| s.entry.upgrade())
                .flatten()
        })
    })?;
    entry.is_fresh(now).then(|| serve(&entry))
}

/// Remembers `entry` (fresh, just served from the cache at `now`) for `ask`.
pub fn keep(ask: &Ask<'_>, group: &Arc<str>, entry: &Arc<Entry>, now: Instant) {
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
                taken: now,
            },
        )
    });
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http::{HeaderMap, StatusCode};

    use super::*;
    use crate::shield::entry::Head;
    use crate::shield::policy::Lifetime;

    fn entry(len: usize, fresh: Duration) -> Arc<Entry> {
        Arc::new(Entry {
            head: Arc::new(Head::new(StatusCode::OK, HeaderMap::new())),
            body: Bytes::from(vec![b'x'; len]),
            len: len as u64,
            stored: Instant::now(),
            lifetime: Lifetime {
                fresh,
                stale: Duration::ZERO,
                arrived_age: Duration::ZERO,
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
        keep(&first, &group, &cached, now);
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
        assert_eq!(served(&first, now), Some(1000));
        drop(cached);
        assert_eq!(served(&first, now), None, "the cache let it go");

        let brief = entry(10, Duration::from_millis(500));
        keep(&first, &group, &brief, now);
        assert_eq!(served(&first, now + Duration::from_millis(400)), Some(10));
        assert_eq!(
            served(&first, now + Duration::from_millis(800)),
            None,
            "no longer fresh"
        );
    }

    #[test]
    fn a_kept_entry_sends_its_requests_back_to_the_cache_every_refresh_interval() {
        let now = Instant::now();
        let group: Arc<str> = Arc::from("");
        let hot = ask("/vod/a/hot.m4s", "", 0);
        let cached = entry(7, Duration::from_secs(600));
        keep(&hot, &group, &cached, now);
        let almost = now + REFRESH - Duration::from_millis(1);
        assert_eq!(served(&hot, almost), Some(7));
        assert_eq!(
            served(&hot, now + REFRESH),
            None,
            "the cache is asked again, and marks the entry used"
        );
        keep(&hot, &group, &cached, now + REFRESH);
        assert_eq!(served(&hot, now + REFRESH), Some(7), "and it answers again");
        assert_eq!(served(&hot, almost + REFRESH), Some(7));
    }
}
