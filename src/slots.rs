//! A thread's memo slots: the per-thread memos of verified credentials
//! ([`crate::ticket::verify_signature_remembered`]), of the shield's entries and of rights
//! decisions each keep one entry a slot in a [`Slots`], in the slot [`slot_of`] gives its key.
//!
//! The slot is FNV-1a over the key's parts, each followed by a byte no text holds (0xff),
//! so that `("ab", "c")` and `("a", "bc")` are different keys. Whoever chooses a key can
//! only push another key of the same thread out of its slot: a slot matches a request only
//! when every part of the key is equal.

use std::cell::RefCell;

/// One thread's slots, each empty or holding one entry; held in a `thread_local!`.
pub struct Slots<T>(RefCell<Vec<Option<T>>>);

impl<T> Slots<T> {
    /// `count` empty slots.
    pub fn new(count: usize) -> Self {
        Self(RefCell::new((0..count).map(|_| None).collect()))
    }

    /// What `read` makes of the entry in slot `at`, if it holds one.
    pub fn read<R>(&self, at: usize, read: impl FnOnce(&T) -> Option<R>) -> Option<R> {
        self.0.borrow()[at].as_ref().and_then(read)
    }

    /// Puts `entry` in slot `at`, in place of what it held.
    pub fn put(&self, at: usize, entry: T) {
        self.0.borrow_mut()[at] = Some(entry);
    }
}

/// The slot among `slots` that the key made of `parts` falls in.
pub fn slot_of(parts: &[&str], slots: usize) -> usize {
    let hash = parts
        .iter()
        .flat_map(|part| part.bytes().chain([0xff]))
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    (hash % slots as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::slot_of;

    #[test]
    fn the_parts_are_kept_apart_and_every_slot_is_used() {
        assert_ne!(
            slot_of(&["ab", "c"], 1 << 16),
            slot_of(&["a", "bc"], 1 << 16)
        );
        let mut used = [false; 64];
        for i in 0..1000 {
            used[slot_of(&["/vod/a/", &format!("seg_{i}.ts")], 64)] = true;
        }
        assert!(
            used.iter().all(|u| *u),
            "1,000 keys leave no slot of 64 empty"
        );
    }
}
