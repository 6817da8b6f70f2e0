//! The yeses this thread took from the decision cache lately, so a player's next segment
//! in the same directory costs a comparison instead of the media lookup, the cache key and
//! the cache's lookup shared between threads.
//!
//! Each serving thread keeps, in each of [`SLOTS`] slots chosen by a hash of subject,
//! directory and device class, the last positive decision it took from the cache there. A
//! slot counts only for the same rights check, while no invalidation came after the
//! decision was read (every invalidation moves the check's generation, see
//! [`super::Rights`]), while the decision still holds at the request's instant, and for
//! at most [`MAX_AGE`] (or the cache's own `positive_ttl`, if shorter) after it was taken.
//! Refusals and first plays are never remembered here.
//!
//! A directory stands for the media: the media of a path is the one with the longest
//! prefix ending in `/` that contains it, so every file of one directory has the same.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::decide::Entitled;
use super::model::DeviceClass;
use crate::slots::{slot_of, Slots};

/// Slots per thread.
const SLOTS: usize = 1024;

/// The longest a remembered yes counts: how much later than the decision cache's
/// `positive_ttl` a change the cache was not told of can be seen.
pub const MAX_AGE: Duration = Duration::from_secs(1);

/// What a slot holds.
struct Slot {
    rights: u64,
    generation: u64,
    subject: Box<str>,
    directory: Box<str>,
    class: DeviceClass,
    entitled: Entitled,
    until: Instant,
}

/// What a request asks the memo for.
pub struct Ask<'a> {
    /// The rights check's id.
    pub rights: u64,
    /// Its generation, read before the cache was.
    pub generation: u64,
    /// The buyer or account.
    pub subject: &'a str,
    /// The requested path's directory (up to and with its last `/`).
    pub directory: &'a str,
    /// The device class.
    pub class: DeviceClass,
}

impl Ask<'_> {
    fn slot(&self) -> usize {
        slot_of(&[self.subject, self.directory, self.class.as_str()], SLOTS)
    }

    fn answers(&self, slot: &Slot) -> bool {
        slot.rights == self.rights
            && slot.generation == self.generation
            && slot.class == self.class
            && *slot.directory == *self.directory
            && *slot.subject == *self.subject
    }
}

thread_local! {
    static MEMO: Slots<Slot> = Slots::new(SLOTS);
}

/// The yes remembered for `ask`, if one counts at `now` (Unix seconds) and `instant`.
pub fn recall(ask: &Ask<'_>, now: u64, instant: Instant) -> Option<Entitled> {
    let slot = ask.slot();
    MEMO.with(|memo| {
        memo.read(slot, |s| {
            (ask.answers(s) && instant < s.until && s.entitled.holds_at(now))
                .then(|| s.entitled.clone())
        })
    })
}

/// Remembers `entitled` (a yes from the cache) for `ask`, for `age` from `instant` (at
/// most [`MAX_AGE`]); it is recalled only while it holds (see [`Entitled::holds_at`]),
/// so a first play never is.
pub fn keep(ask: &Ask<'_>, entitled: &Entitled, instant: Instant, age: Duration) {
    // Copies of its own: this thread's clones of it then count on counters no other
    // thread touches.
    let own = |e: &Entitled| Entitled {
        purchase: Arc::from(&*e.purchase),
        product: Arc::from(&*e.product),
        others: None,
        ..e.clone()
    };
    let entitled = Entitled {
        others: entitled
            .others
            .as_ref()
            .map(|others| others.iter().map(own).collect()),
        ..own(entitled)
    };
    let slot = ask.slot();
    MEMO.with(|memo| {
        memo.put(
            slot,
            Slot {
                rights: ask.rights,
                generation: ask.generation,
                subject: ask.subject.into(),
                directory: ask.directory.into(),
                class: ask.class,
                entitled,
                until: instant + age.min(MAX_AGE),
            },
        )
    });
}

/// The directory of a normalised path: up to and with its last `/`.
pub fn directory(path: &str) -> &str {
    path.rfind('/').map_or(path, |at| &path[..=at])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entitled(until: Option<u64>, first_play: bool) -> Entitled {
        Entitled {
            first_play: first_play.then_some(crate::rights::decide::FirstPlay {
                seconds: 3600,
                bound: None,
            }),
            ..Entitled::unlimited("p1", until)
        }
    }

    fn ask<'a>(subject: &'a str, directory: &'a str, generation: u64) -> Ask<'a> {
        Ask {
            rights: 1,
            generation,
            subject,
            directory,
            class: DeviceClass::Ott,
        }
    }

    #[test]
    fn a_yes_counts_for_its_own_question_until_anything_moves() {
        let instant = Instant::now();
        let first = ask("alice", "/vod/a/", 3);
        keep(
            &first,
            &entitled(Some(1_000), false),
            instant,
            Duration::from_secs(60),
        );
        assert_eq!(
            recall(&first, 999, instant),
            Some(entitled(Some(1_000), false))
        );
        assert_eq!(recall(&first, 1_000, instant), None, "the right ended");
        assert_eq!(
            recall(&ask("alice", "/vod/a/", 4), 999, instant),
            None,
            "invalidated"
        );
        assert_eq!(recall(&ask("bob", "/vod/a/", 3), 999, instant), None);
        assert_eq!(recall(&ask("alice", "/vod/b/", 3), 999, instant), None);
        let tv = Ask {
            class: DeviceClass::Iptv,
            ..ask("alice", "/vod/a/", 3)
        };
        assert_eq!(recall(&tv, 999, instant), None);
        let other = Ask {
            rights: 2,
            ..ask("alice", "/vod/a/", 3)
        };
        assert_eq!(recall(&other, 999, instant), None);
        assert_eq!(
            recall(&first, 999, instant + MAX_AGE),
            None,
            "at most MAX_AGE, whatever the cache's lifetime"
        );
    }

    #[test]
    fn a_short_cache_lifetime_bounds_it_and_first_plays_are_not_kept() {
        let instant = Instant::now();
        let short = ask("carol", "/vod/c/", 0);
        keep(
            &short,
            &entitled(None, false),
            instant,
            Duration::from_millis(5),
        );
        assert!(recall(&short, 0, instant).is_some());
        assert_eq!(recall(&short, 0, instant + Duration::from_millis(5)), None);
        let first_play = ask("dave", "/vod/d/", 0);
        keep(
            &first_play,
            &entitled(None, true),
            instant,
            Duration::from_secs(60),
        );
        assert_eq!(recall(&first_play, 0, instant), None);
    }

    #[test]
    fn the_directory_is_what_the_media_lookup_looks_under() {
        assert_eq!(directory("/vod/a/seg_1.ts"), "/vod/a/");
        assert_eq!(directory("/vod/a/"), "/vod/a/");
        assert_eq!(directory("/x"), "/");
    }

    #[test]
    fn a_kept_yes_and_the_purchases_it_may_fall_back_to_are_this_threads_own_copies() {
        let instant = Instant::now();
        let question = ask("carol", "/vod/c/", 1);
        let rental = entitled(Some(2_000), false);
        let yes = Entitled {
            others: Some(vec![rental].into()),
            ..entitled(Some(1_000), false)
        };
        keep(&question, &yes, instant, Duration::from_secs(60));
        let recalled = recall(&question, 999, instant).expect("kept");
        assert_eq!(recalled, yes);
        let (kept, shared) = (recalled.others.unwrap(), yes.others.unwrap());
        assert!(!Arc::ptr_eq(&kept, &shared));
        assert!(!Arc::ptr_eq(&kept[0].purchase, &shared[0].purchase));
    }
}
