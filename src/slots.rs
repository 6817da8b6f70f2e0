//! Where a key falls among a thread's memo slots: the per-thread memos of verified
//! credentials ([`crate::ticket::verify_signature_remembered`]), of the shield's entries
//! and of rights decisions each keep one entry a slot, chosen by this hash of the key.
//!
//! FNV-1a over the key's parts, each followed by a byte no text holds (0xff), so that
//! `("ab", "c")` and `("a", "bc")` are different keys. Whoever chooses a key can only
//! push another key of the same thread out of its slot: a slot matches a request only
//! when every part of the key is equal.

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
