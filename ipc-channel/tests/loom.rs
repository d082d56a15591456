//! CH-004: loom explores every interleaving (up to its preemption bound) of the real
//! producer and consumer on two threads, over loom's atomics. Run with
//! `RUSTFLAGS="--cfg loom"` (`cargo xtask verify` does).
#![cfg(loom)]

use loom::sync::atomic::AtomicU32;
use loom::sync::Arc;
use septum_ipc_channel::queuing::{Consumer, Producer, RecvError};
use septum_ipc_channel::sampling::{self, Reader, Writer};
use septum_ipc_channel::{Checksum, Geometry, HostRegion, Shared};

fn words(bytes: usize) -> Arc<Vec<AtomicU32>> {
    Arc::new((0..bytes.div_ceil(4)).map(|_| AtomicU32::new(0)).collect())
}

/// A region that owns its memory, so an attached end can move to another thread.
#[derive(Clone)]
struct ArcRegion(Arc<Vec<AtomicU32>>);

impl Shared for ArcRegion {
    fn size(&self) -> usize {
        HostRegion::new(&self.0).size()
    }
    fn load_acquire(&self, off: usize) -> u32 {
        HostRegion::new(&self.0).load_acquire(off)
    }
    fn store_release(&self, off: usize, value: u32) {
        HostRegion::new(&self.0).store_release(off, value)
    }
    fn read(&self, off: usize, dst: &mut [u8]) {
        HostRegion::new(&self.0).read(off, dst)
    }
    fn write(&self, off: usize, src: &[u8]) {
        HostRegion::new(&self.0).write(off, src)
    }
    fn fence_acquire(&self) {
        HostRegion::new(&self.0).fence_acquire()
    }
    fn fence_release(&self) {
        HostRegion::new(&self.0).fence_release()
    }
}

/// FIFO, no loss, no duplication, no torn message, across every interleaving.
#[test]
fn queuing_is_fifo_under_every_interleaving() {
    fifo_under_every_interleaving(Checksum::Crc32c);
}

/// The same without a checksum (CH-012): the indices' ordering alone keeps messages
/// whole.
#[test]
fn queuing_without_a_checksum_is_fifo_under_every_interleaving() {
    fifo_under_every_interleaving(Checksum::None);
}

fn fifo_under_every_interleaving(checksum: Checksum) {
    loom::model(move || {
        let geo = Geometry::new(32, 2).unwrap();
        let prod = ArcRegion(words(geo.producer_region_size()));
        let cons = ArcRegion(words(geo.consumer_region_size()));
        // Both ends attach before either runs (as at partition start).
        let mut tx = Producer::new(geo, checksum, prod.clone(), cons.clone()).unwrap();
        let mut rx = Consumer::new(geo, checksum, cons, prod).unwrap();
        let receiver = loom::thread::spawn(move || {
            let mut got = Vec::new();
            let mut buf = [0u8; 16];
            for _ in 0..6 {
                match rx.recv(&mut buf) {
                    Ok(n) => got.push(buf[..n].to_vec()),
                    Err(RecvError::Empty) => loom::thread::yield_now(),
                    Err(e) => panic!("honest producer, yet {e:?}"),
                }
            }
            got
        });
        let mut sent = 0u8;
        for _ in 0..4 {
            if sent < 3 && tx.send(&[sent, sent ^ 0xFF]).is_ok() {
                sent += 1;
            } else {
                loom::thread::yield_now();
            }
        }
        let got = receiver.join().unwrap();
        for (i, m) in got.iter().enumerate() {
            assert_eq!(m, &vec![i as u8, i as u8 ^ 0xFF], "out of order, duplicated or torn");
        }
        assert!(got.len() <= sent as usize);
    });
}

/// A reader never accepts a torn sampling value.
#[test]
fn sampling_never_returns_a_torn_value() {
    loom::model(|| {
        let mem = words(sampling::region_size(8));
        let mut w = Writer::new(8, Checksum::Crc32c, HostRegion::new(&mem)).unwrap();
        let rmem = Arc::clone(&mem);
        let reader = loom::thread::spawn(move || {
            let mut r = Reader::new(8, Checksum::Crc32c, u64::MAX, HostRegion::new(&rmem)).unwrap();
            let mut buf = [0u8; 8];
            if let Ok(s) = r.read(&mut buf, 10) {
                assert_eq!(s.len, 4);
                assert!(buf[..4] == [1; 4] || buf[..4] == [2; 4], "torn: {:?}", &buf[..4]);
            }
        });
        w.write(&[1; 4], 1).unwrap();
        w.write(&[2; 4], 2).unwrap();
        reader.join().unwrap();
    });
}
