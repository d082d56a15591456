//! CRC-32C (Castagnoli; the iSCSI CRC): reflected polynomial 0x82F63B78, register
//! starting at all ones, result inverted. It detects every error of up to 5 bits in
//! messages of up to 5,243 bits (Hamming distance 6), and both of the CPUs Septum meets
//! compute it in one instruction per 8 bytes: x86-64's SSE 4.2 `crc32` and AArch64's
//! `crc32cx` (FEAT_CRC32, which every CPU Septum supports has: Cortex-A53, Cortex-A72,
//! QEMU's cortex-a72).
//!
//! Which way it is computed:
//! * AArch64 built with `target_feature = "crc"` (the guests and the Linux agent:
//!   `.cargo/config.toml` enables it for their targets): the instruction, always, with
//!   no dispatch. Decided at build time rather than by reading ID_AA64ISAR0_EL1 at run
//!   time because every supported CPU has it, because the check would sit in front of
//!   every message of a 16-byte stream whose whole budget is a few dozen instructions,
//!   and because reading the register from Linux user space is itself a trap into the
//!   kernel's emulation. The guests' runtime still reads ID_AA64ISAR0_EL1 once at
//!   start and stops with a message on a CPU without it, rather than fault on the
//!   first message ([`BUILT_FOR_THE_INSTRUCTION`]).
//! * x86-64 (the host: tests, benchmarks, tools): the instruction when CPUID says SSE
//!   4.2 (looked up once), else tables.
//! * Anything else, and always under Miri (which cannot run the instructions): tables
//!   (slicing by 8, built at compile time).
//!
//! Long inputs go as three interleaved streams, so the instruction's latency (three
//! cycles, one issued per cycle) is hidden; the three partial CRCs are joined by
//! multiplying by x^(8·block) modulo the polynomial, a linear map kept as four
//! 256-entry tables per block size (three sizes, 12 KiB, built at compile time).
//!
//! The only `unsafe` here calls the `#[target_feature]` functions, once the CPU is known
//! to have the feature.
#![allow(unsafe_code)]

use zerocopy::FromBytes;

/// The reflected polynomial.
const POLY: u32 = 0x82F6_3B78;

/// The register before the first byte.
pub const INIT: u32 = !0;

/// The CRC of everything fed since [`INIT`].
pub const fn finish(state: u32) -> u32 {
    !state
}

/// `state` advanced over `bytes`.
pub fn update(state: u32, bytes: &[u8]) -> u32 {
    sum(state, None, bytes)
}

/// `state` advanced over `head`'s 8 little-endian bytes (if any), then `bytes`: a
/// message's numbers and payload in one call, so the way of computing is chosen once.
#[inline]
pub fn sum(state: u32, head: Option<u64>, bytes: &[u8]) -> u32 {
    match engine() {
        #[cfg(all(target_arch = "aarch64", target_feature = "crc", not(miri)))]
        Engine::Instruction => {
            // SAFETY: this build is for CPUs with FEAT_CRC32 (compiled with
            // `target_feature = "crc"`); every CPU Septum supports has it, and the guests
            // check ID_AA64ISAR0_EL1.CRC32 at start.
            unsafe { aarch64::sum(state, head, bytes) }
        }
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        Engine::Instruction => {
            // SAFETY: `engine` answers `Instruction` only when CPUID says SSE 4.2.
            unsafe { x86::sum(state, head, bytes) }
        }
        _ => steps(state, head, bytes, table::word, table::byte),
    }
}

/// `state` advanced over `bytes` with the tables, whatever the CPU has: the reference
/// the instruction is tested against, and the way Miri runs.
pub fn update_with_tables(state: u32, bytes: &[u8]) -> u32 {
    steps(state, None, bytes, table::word, table::byte)
}

/// Whether [`update`] uses the CPU's instruction here.
pub fn uses_the_instruction() -> bool {
    matches!(engine(), Engine::Instruction)
}

/// Whether this build runs the instruction without asking the CPU (AArch64 built with
/// `target_feature = "crc"`): such a program must not start on a CPU without
/// FEAT_CRC32, which the guests' runtime checks.
pub const BUILT_FOR_THE_INSTRUCTION: bool = cfg!(all(target_arch = "aarch64", target_feature = "crc"));

/// How this program computes the CRC (one of the two is never built on a given target).
#[allow(dead_code)]
#[derive(Clone, Copy, PartialEq, Eq)]
enum Engine {
    Instruction,
    Table,
}

#[inline(always)]
fn engine() -> Engine {
    #[cfg(all(target_arch = "aarch64", target_feature = "crc", not(miri)))]
    return Engine::Instruction;
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    return x86::engine();
    #[allow(unreachable_code)]
    Engine::Table
}

/// Words per stream of the three interleaved ones, longest first, and the tables that
/// move a CRC past one stream's length. 170 words: a 4 KiB message in one round with
/// two words left over; the shorter ones catch the rest within a few rounds.
static BLOCKS: [(usize, &Shift); 3] = [(170, &SHIFT_170), (42, &SHIFT_42), (10, &SHIFT_10)];

static SHIFT_170: Shift = Shift::new(170 * 8);
static SHIFT_42: Shift = Shift::new(42 * 8);
static SHIFT_10: Shift = Shift::new(10 * 8);

/// [`sum`] with `word_step` (8 bytes into the register) and `byte_step`: the words three
/// streams at a time while there are enough of them for a block size, then one at a
/// time, then the bytes left. Inlined into each way of stepping, so the steps become
/// straight-line code.
#[inline(always)]
fn steps(
    state: u32,
    head: Option<u64>,
    bytes: &[u8],
    word_step: impl Fn(u32, u64) -> u32,
    byte_step: impl Fn(u32, u8) -> u32,
) -> u32 {
    let mut crc = head.map_or(state, |h| word_step(state, h));
    // Bytes up to the first 8-byte boundary, then aligned words: a target that must not
    // load unaligned words (the bare-metal guests: strict alignment) loads each in one
    // instruction instead of eight.
    let lead = bytes.as_ptr().align_offset(8).min(bytes.len());
    let (lead, rest) = bytes.split_at(lead);
    crc = lead.iter().fold(crc, |c, &b| byte_step(c, b));
    let (mut words, tail) = <[u64]>::ref_from_prefix(rest).unwrap_or((&[], rest));
    let le = |w: &u64| u64::from_le(*w);
    for &(block, shift) in &BLOCKS {
        while words.len() >= 3 * block {
            let (a_words, rest) = words.split_at(block);
            let (b_words, rest) = rest.split_at(block);
            let (c_words, rest) = rest.split_at(block);
            let (mut a, mut b, mut c) = (crc, 0, 0);
            for ((x, y), z) in a_words.iter().zip(b_words).zip(c_words) {
                a = word_step(a, le(x));
                b = word_step(b, le(y));
                c = word_step(c, le(z));
            }
            // Register after A‖B‖C = shift(shift(a) ^ b) ^ c: the register is linear in
            // what it starts from, and b and c started from zero.
            crc = shift.apply(shift.apply(a) ^ b) ^ c;
            words = rest;
        }
    }
    let crc = words.iter().fold(crc, |c, w| word_step(c, le(w)));
    tail.iter().fold(crc, |c, &b| byte_step(c, b))
}

/// Multiplication by x^(8·n) modulo the polynomial (the register moved past n zero
/// bytes), as four tables: one per byte of the register.
struct Shift([[u32; 256]; 4]);

impl Shift {
    const fn new(bytes: usize) -> Self {
        // x^(8n) mod P: the polynomial 1 (the register's top bit, reflected) moved past
        // n zero bytes, one bit at a time.
        let mut k = 1 << 31;
        let mut bit = 0;
        while bit < 8 * bytes {
            k = if k & 1 != 0 { (k >> 1) ^ POLY } else { k >> 1 };
            bit += 1;
        }
        let mut t = [[0; 256]; 4];
        let mut j = 0;
        while j < 4 {
            let mut v = 0;
            while v < 256 {
                t[j][v] = multiply((v as u32) << (8 * j), k);
                v += 1;
            }
            j += 1;
        }
        Shift(t)
    }

    #[inline(always)]
    fn apply(&self, c: u32) -> u32 {
        let t = &self.0;
        t[0][c as usize & 0xFF]
            ^ t[1][(c >> 8) as usize & 0xFF]
            ^ t[2][(c >> 16) as usize & 0xFF]
            ^ t[3][(c >> 24) as usize]
    }
}

/// a·b modulo the polynomial, both reflected (bit 31 is x^0).
const fn multiply(a: u32, mut b: u32) -> u32 {
    let mut product = 0;
    let mut bit = 31;
    loop {
        if a & (1 << bit) != 0 {
            product ^= b;
        }
        if bit == 0 {
            return product;
        }
        b = if b & 1 != 0 { (b >> 1) ^ POLY } else { b >> 1 };
        bit -= 1;
    }
}

/// The portable way: slicing by 8.
mod table {
    use super::POLY;

    /// `T[k][b]`: the register's change from byte `b` followed by `k` zero bytes.
    static T: [[u32; 256]; 8] = {
        let mut t = [[0u32; 256]; 8];
        let mut b = 0;
        while b < 256 {
            let mut c = b as u32;
            let mut i = 0;
            while i < 8 {
                c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
                i += 1;
            }
            t[0][b] = c;
            b += 1;
        }
        let mut k = 1;
        while k < 8 {
            let mut b = 0;
            while b < 256 {
                let prev = t[k - 1][b];
                t[k][b] = (prev >> 8) ^ t[0][(prev & 0xFF) as usize];
                b += 1;
            }
            k += 1;
        }
        t
    };

    #[inline(always)]
    pub(super) fn word(c: u32, w: u64) -> u32 {
        let x = w ^ u64::from(c);
        let b = |i: u32| (x >> (8 * i)) as usize & 0xFF;
        T[7][b(0)] ^ T[6][b(1)] ^ T[5][b(2)] ^ T[4][b(3)] ^ T[3][b(4)] ^ T[2][b(5)] ^ T[1][b(6)] ^ T[0][b(7)]
    }

    #[inline(always)]
    pub(super) fn byte(c: u32, b: u8) -> u32 {
        (c >> 8) ^ T[0][((c ^ u32::from(b)) & 0xFF) as usize]
    }
}

#[cfg(all(target_arch = "x86_64", not(miri)))]
mod x86 {
    use super::Engine;
    use core::arch::x86_64::{__cpuid, _mm_crc32_u64, _mm_crc32_u8};
    use core::sync::atomic::{AtomicU8, Ordering};

    /// 0: not asked yet; else 1 + whether the CPU has SSE 4.2.
    static SSE42: AtomicU8 = AtomicU8::new(0);

    #[inline(always)]
    pub(super) fn engine() -> Engine {
        if cfg!(target_feature = "sse4.2") {
            return Engine::Instruction;
        }
        let known = match SSE42.load(Ordering::Relaxed) {
            0 => {
                // CPUID leaf 1, ECX bit 20: SSE 4.2 (Intel SDM vol. 2A, CPUID).
                let has = __cpuid(1).ecx & (1 << 20) != 0;
                SSE42.store(1 + u8::from(has), Ordering::Relaxed);
                has
            }
            v => v == 2,
        };
        if known {
            Engine::Instruction
        } else {
            Engine::Table
        }
    }

    #[target_feature(enable = "sse4.2")]
    pub(super) fn sum(state: u32, head: Option<u64>, bytes: &[u8]) -> u32 {
        let word_step = |c: u32, w| _mm_crc32_u64(u64::from(c), w) as u32;
        super::steps(state, head, bytes, word_step, |c, b| _mm_crc32_u8(c, b))
    }
}

#[cfg(all(target_arch = "aarch64", target_feature = "crc", not(miri)))]
mod aarch64 {
    use core::arch::aarch64::{__crc32cb, __crc32cd};

    #[target_feature(enable = "crc")]
    pub(super) fn sum(state: u32, head: Option<u64>, bytes: &[u8]) -> u32 {
        super::steps(state, head, bytes, |c, w| __crc32cd(c, w), |c, b| __crc32cb(c, b))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    /// The reference: the `crc` crate's CRC-32/ISCSI (CRC-32C), computed bit-serially
    /// by a different program than ours.
    fn reference(bytes: &[u8]) -> u32 {
        crc::Crc::<u32>::new(&crc::CRC_32_ISCSI).checksum(bytes)
    }

    fn ours(bytes: &[u8]) -> u32 {
        finish(update(INIT, bytes))
    }

    fn pattern(len: usize, seed: u32) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    }

    /// CH-011: the check value every CRC-32C catalogue lists, and RFC 3720's examples
    /// (32 bytes of zeros, of ones, ascending).
    #[test]
    fn known_values() {
        assert_eq!(ours(b"123456789"), 0xE306_9283);
        assert_eq!(ours(&[0; 32]), 0x8A91_36AA);
        assert_eq!(ours(&[0xFF; 32]), 0x62A8_AB43);
        let ascending: Vec<u8> = (0..32).collect();
        assert_eq!(ours(&ascending), 0x46DD_794E);
        assert_eq!(ours(b""), 0);
    }

    /// CH-011: equal to the `crc` crate at every length up to past two of the longest
    /// blocks' rounds (every way through the three block sizes and the tail), from
    /// every start alignment, by both ways of computing it.
    #[test]
    fn matches_the_crc_crate_at_every_length_and_alignment() {
        let data = pattern(3 * 3 * 170 * 8 + 64, 7);
        // Under Miri (slow): the edges of each way through instead of every length.
        let edges = [0, 1, 7, 8, 9, 79, 80, 239, 240, 241, 256, 1007, 1008, 1009, 4080, 4096, 4104];
        let lens: Vec<usize> = if cfg!(miri) { edges.to_vec() } else { (0..data.len() - 8).collect() };
        for len in lens {
            for skew in [0, 1, 3, 5] {
                let bytes = &data[skew..skew + len];
                let want = reference(bytes);
                assert_eq!(ours(bytes), want, "len {len} skew {skew}");
                assert_eq!(finish(update_with_tables(INIT, bytes)), want, "tables, len {len} skew {skew}");
            }
        }
    }

    /// CH-011: the instruction is in use wherever the CPU has it (this host's CPU, if it
    /// is an x86-64 with SSE 4.2), and never under Miri.
    #[test]
    fn the_instruction_is_used_where_present() {
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        assert_eq!(uses_the_instruction(), std::is_x86_feature_detected!("sse4.2"));
        #[cfg(miri)]
        assert!(!uses_the_instruction());
    }

    #[test]
    fn a_crc_can_be_carried_across_pieces() {
        let data = pattern(5000, 3);
        for cut in [0, 1, 8, 9, 240, 1021, 4096, 5000] {
            let (a, b) = data.split_at(cut);
            assert_eq!(finish(update(update(INIT, a), b)), reference(&data), "cut at {cut}");
        }
    }

    proptest! {
        /// CH-011: random inputs, random cuts: the instruction, the tables and the `crc`
        /// crate agree.
        #[test]
        fn random_inputs_agree(bytes in proptest::collection::vec(any::<u8>(), 0..6000), cut in any::<usize>()) {
            let cut = cut % (bytes.len() + 1);
            let want = reference(&bytes);
            prop_assert_eq!(finish(update(update(INIT, &bytes[..cut]), &bytes[cut..])), want);
            prop_assert_eq!(finish(update_with_tables(INIT, &bytes)), want);
        }
    }
}
