//! Unique ids without I/O or locks: a random 32-bit prefix per thread (core) and a
//! 32-bit counter, as 16 lowercase hex digits. Used for request ids and hold ids.

use std::{
    cell::Cell,
    hash::{BuildHasher, Hasher},
};

thread_local! {
    static NEXT: Cell<u64> = Cell::new(
        std::collections::hash_map::RandomState::new().build_hasher().finish() << 32,
    );
}

/// Characters in an id.
pub const ID_BYTES: usize = 16;

/// Appends a new id to `out`.
#[inline]
pub fn write_next(out: &mut Vec<u8>) {
    let mut id = [0; ID_BYTES];
    write_next_into(&mut id);
    out.extend_from_slice(&id);
}

/// Writes a new id into `out`.
#[inline]
pub fn write_next_into(out: &mut [u8; ID_BYTES]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let id = NEXT.get();
    NEXT.set((id & !0xffff_ffff) | (id.wrapping_add(1) & 0xffff_ffff));
    for (i, digit) in out.iter_mut().enumerate() {
        *digit = HEX[((id >> ((ID_BYTES - 1 - i) * 4)) & 0xf) as usize];
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_distinct_hex() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let mut out = Vec::new();
            super::write_next(&mut out);
            assert_eq!(out.len(), 16);
            assert!(out.iter().all(u8::is_ascii_hexdigit));
            assert!(seen.insert(out));
        }
        let other = std::thread::spawn(|| {
            let mut out = Vec::new();
            super::write_next(&mut out);
            out
        });
        assert!(
            !seen.contains(&other.join().expect("thread")),
            "cores have their own prefix"
        );
    }
}
