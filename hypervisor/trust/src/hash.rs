//! The one hash of the chain of trust (SHA-512, as ed25519 uses) and constant-time
//! comparison of digests.

use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;

use crate::HASH_LEN;

pub type Hash = [u8; HASH_LEN];

/// SHA-512 of `bytes`.
pub fn sha512(bytes: &[u8]) -> Hash {
    Sha512::digest(bytes).into()
}

/// SHA-512 over several pieces, as if concatenated.
pub fn sha512_parts(parts: &[&[u8]]) -> Hash {
    let mut h = Sha512::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// Compares two digests in time independent of where they differ.
pub fn equal(a: &Hash, b: &Hash) -> bool {
    bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answer_and_parts() {
        // FIPS 180-2 example: SHA-512("abc") starts ddaf35a1.
        assert_eq!(&sha512(b"abc")[..4], &[0xdd, 0xaf, 0x35, 0xa1]);
        assert!(equal(&sha512(b"abc"), &sha512_parts(&[b"a", b"", b"bc"])));
        assert!(!equal(&sha512(b"abc"), &sha512(b"abd")));
    }
}
