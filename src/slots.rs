//! A thread's memo slots: the per-thread memos of verified credentials
//! ([`crate::ticket::verify_signature_remembered`]), of the shield's entries and of rights
//! decisions each keep one entry a slot in a [`Slots`], in the pair of slots (two ways)
//! that [`slot_of`] gives its key: two keys that fall in one place both stay.
//!
//! The place is a multiplicative hash over the key's parts, eight bytes at a time, each
//! part closed by its length, so that `("ab", "c")` and `("a", "bc")` land apart. Whoever
//! chooses a key can only push other keys of the same thread out of their place: a slot
//! matches a request only when every part of the key is equal.

use std::cell::RefCell;

/// One thread's slots, each empty or holding one entry, in pairs; held in a
/// `thread_local!`.
pub struct Slots<T>(RefCell<Vec<Option<T>>>);

impl<T> Slots<T> {
    /// `count` empty slots (rounded up to whole pairs).
    pub fn new(count: usize) -> Self {
        let count = count.max(2).next_multiple_of(2);
        Self(RefCell::new((0..count).map(|_| None).collect()))
    }

    /// What `read` makes of an entry in the pair of slot `at`: the newer first, then the
    /// older.
    pub fn read<R>(&self, at: usize, read: impl Fn(&T) -> Option<R>) -> Option<R> {
        let slots = self.0.borrow();
        let first = at & !1;
        slots[first..first + 2]
            .iter()
            .find_map(|slot| slot.as_ref().and_then(&read))
    }

    /// Puts `entry` in the pair of slot `at`, as its newer entry; the newer one it held
    /// becomes the older, and the older one goes.
    pub fn put(&self, at: usize, entry: T) {
        let mut slots = self.0.borrow_mut();
        let first = at & !1;
        slots[first + 1] = slots[first].replace(entry);
    }
}

/// The slot among `slots` (of a [`Slots`] that many long) that the key made of `parts`
/// falls in.
pub fn slot_of(parts: &[&str], slots: usize) -> usize {
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    let mut mix = |word: u64| {
        hash = (hash ^ word)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(29);
    };
    for part in parts {
        let bytes = part.as_bytes();
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            mix(u64::from_le_bytes(word.try_into().expect("eight bytes")));
        }
        let mut tail = [0u8; 8];
        tail[..words.remainder().len()].copy_from_slice(words.remainder());
        mix(u64::from_le_bytes(tail));
        mix(bytes.len() as u64);
    }
    ((hash ^ (hash >> 32)) % slots as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::{slot_of, Slots};

    #[test]
    fn two_keys_of_one_pair_both_stay_until_a_third_comes() {
        let slots = Slots::new(8);
        let find = |key: u32| slots.read(4, |&k| (k == key).then_some(k));
        slots.put(4, 1);
        slots.put(5, 2);
        assert_eq!((find(1), find(2)), (Some(1), Some(2)));
        slots.put(4, 3);
        assert_eq!((find(1), find(2), find(3)), (None, Some(2), Some(3)));
        assert_eq!(
            slots.read(2, |&k| Some(k)),
            None,
            "another pair is untouched"
        );
    }

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
