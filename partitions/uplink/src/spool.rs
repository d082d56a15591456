//! The store-and-forward queue on the data disk: every record to upload is appended
//! here first and removed only once the broker has acknowledged it, so a broker (or
//! network) outage loses nothing, and what waited is sent in order afterwards, also
//! after the partition restarts.
//!
//! Layout: a directory of append-only segment files `seg-<first index, 16 hex>.log` and
//! a `cursor` file. Each record gets a spool index (one more than the previous record's,
//! across restarts) and is stored as one frame:
//!
//! ```text
//! crc32 (u32 LE, over the rest) | len (u16 LE) | index (u64 LE) | record (len bytes)
//! ```
//!
//! `cursor` holds the index below which every record was acknowledged (u64 LE and its
//! CRC-32). Policies (docs/upload.md):
//! * fsync: a frame is written at once and made durable at the next [`Spool::sync`]
//!   (the uploader calls it once a second), an alarm's at once; the cursor is saved at
//!   the next sync too. A crash loses at most a second of beats and summaries, never an
//!   alarm, and may re-send up to a second of acknowledged records (delivery is at
//!   least once; receivers drop repeats by device and seq).
//! * torn tail: on open, the last segment is cut at its first frame that is short or
//!   fails its CRC (a write the crash interrupted); a bad frame in an older segment ends
//!   that segment (counted as corrupt), the next segment is read on.
//! * bound: the segments together stay within [`Limits::total_bytes`]. Past it, the
//!   oldest segment holding anything but alarms is rewritten with its alarms only; when
//!   only alarms are left, the oldest segment goes. What is dropped is counted.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use septum_vitals::{Record, RecordKind, MAX_RECORD};

/// Bytes before a frame's record.
const FRAME_HEADER: usize = 14;
const CURSOR: &str = "cursor";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// A segment is closed (and a new one begun) before it would exceed this.
    pub segment_bytes: u64,
    /// All segments together; at least two segments' worth.
    pub total_bytes: u64,
}

impl Default for Limits {
    /// 64 KiB segments, 16 MiB in all (a quarter of the 64 MiB data disk): about
    /// 270 000 records, days of beats and summaries.
    fn default() -> Self {
        Self { segment_bytes: 64 << 10, total_bytes: 16 << 20 }
    }
}

/// What the spool did since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub appended: u64,
    /// Not yet acknowledged records removed to keep the bound.
    pub dropped: u64,
    /// Frames found damaged when opening or reading (other than a torn tail).
    pub corrupt: u64,
    /// Bytes cut from the last segment's torn tail on open.
    pub torn_bytes: u64,
}

#[derive(Debug)]
struct Segment {
    first: u64,
    path: PathBuf,
    bytes: u64,
    frames: u64,
    /// Frames that are not alarms: what the bound removes first.
    non_alarms: u64,
}

#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    limits: Limits,
    segments: VecDeque<Segment>,
    /// The last segment, open for appending.
    tail: Option<File>,
    next_index: u64,
    acked: u64,
    saved_acked: u64,
    unsynced: bool,
    stats: Stats,
    /// Where the last read ended, so the next one need not scan its segment again.
    hint: Option<Hint>,
    /// Counts rewrites of segments, which move frames and so invalidate [`Hint`]s.
    generation: u64,
}

#[derive(Clone, Copy, Debug)]
struct Hint {
    first: u64,
    offset: u64,
    index: u64,
    generation: u64,
}

/// One frame read back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub index: u64,
    pub record: Record,
}

fn frame(index: u64, record: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(FRAME_HEADER + record.len());
    f.extend_from_slice(&[0; 4]);
    f.extend_from_slice(&(record.len() as u16).to_le_bytes());
    f.extend_from_slice(&index.to_le_bytes());
    f.extend_from_slice(record);
    let crc = crc32fast::hash(&f[4..]);
    f[..4].copy_from_slice(&crc.to_le_bytes());
    f
}

/// The frames at the start of `bytes` that are whole and intact, and the length they
/// take; parsing stops at the first that is not.
fn frames(bytes: &[u8]) -> (Vec<(u64, &[u8])>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(h) = bytes.get(at..at + FRAME_HEADER) {
        let len = usize::from(u16::from_le_bytes([h[4], h[5]]));
        let Some(whole) = bytes.get(at..at + FRAME_HEADER + len) else { break };
        if crc32fast::hash(&whole[4..]).to_le_bytes() != whole[..4] {
            break;
        }
        let index = u64::from_le_bytes(whole[6..14].try_into().unwrap_or_default());
        out.push((index, &whole[FRAME_HEADER..]));
        at += whole.len();
    }
    (out, at)
}

fn is_alarm_bytes(record: &[u8]) -> bool {
    record.first() == Some(&(RecordKind::Alarm as u8))
}

fn segment_name(first: u64) -> String {
    format!("seg-{first:016x}.log")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("seg-")?.strip_suffix(".log")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, resuming where it stopped.
    pub fn open(dir: &Path, limits: Limits) -> io::Result<Spool> {
        assert!(limits.total_bytes >= 2 * limits.segment_bytes && limits.segment_bytes > 64, "{limits:?}");
        fs::create_dir_all(dir)?;
        let mut firsts = Vec::new();
        for e in fs::read_dir(dir)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                // A rewrite or cursor save the crash interrupted: the original stands.
                fs::remove_file(e.path())?;
            } else if let Some(first) = parse_segment_name(&name) {
                firsts.push(first);
            }
        }
        firsts.sort_unstable();
        let acked = read_cursor(&dir.join(CURSOR));
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            limits,
            segments: VecDeque::new(),
            tail: None,
            next_index: 0,
            acked: acked.unwrap_or(0),
            saved_acked: acked.unwrap_or(0),
            unsynced: false,
            stats: Stats::default(),
            hint: None,
            generation: 0,
        };
        let count = firsts.len();
        for (k, first) in firsts.into_iter().enumerate() {
            let path = dir.join(segment_name(first));
            let bytes = fs::read(&path)?;
            let (found, good) = frames(&bytes);
            if good < bytes.len() {
                if k + 1 == count {
                    // The torn tail of the last write before a crash.
                    let f = OpenOptions::new().write(true).open(&path)?;
                    f.set_len(good as u64)?;
                    f.sync_all()?;
                    spool.stats.torn_bytes += (bytes.len() - good) as u64;
                } else {
                    spool.stats.corrupt += 1;
                }
            }
            let non_alarms = found.iter().filter(|(_, r)| !is_alarm_bytes(r)).count() as u64;
            if let Some((last, _)) = found.last() {
                spool.next_index = spool.next_index.max(last + 1);
            }
            spool.next_index = spool.next_index.max(first);
            spool.segments.push_back(Segment {
                first,
                path,
                bytes: good as u64,
                frames: found.len() as u64,
                non_alarms,
            });
        }
        // A cursor that is missing or damaged: send everything still here again.
        if acked.is_none() {
            spool.acked = spool.segments.front().map_or(0, |s| s.first);
        }
        spool.next_index = spool.next_index.max(spool.acked);
        if let Some(last) = spool.segments.back() {
            spool.tail = Some(OpenOptions::new().append(true).open(&last.path)?);
        }
        spool.remove_acked()?;
        Ok(spool)
    }

    /// Appends `record`; durable at the next [`Self::sync`], or at once for an alarm.
    pub fn append(&mut self, record: &Record) -> io::Result<u64> {
        let index = self.next_index;
        let f = frame(index, record.as_bytes());
        let full = self.segments.back().is_none_or(|s| s.bytes + f.len() as u64 > self.limits.segment_bytes);
        if full || self.tail.is_none() {
            self.sync()?;
            let path = self.dir.join(segment_name(index));
            let file = OpenOptions::new().create(true).append(true).open(&path)?;
            sync_dir(&self.dir)?;
            self.segments.push_back(Segment { first: index, path, bytes: 0, frames: 0, non_alarms: 0 });
            self.tail = Some(file);
        }
        let (Some(tail), Some(seg)) = (self.tail.as_mut(), self.segments.back_mut()) else {
            return Err(io::Error::other("spool: no tail segment"));
        };
        if let Err(e) = tail.write_all(&f) {
            // A part-written frame (a full disk, say) would hide every frame after it:
            // cut it off, so the segment stays a run of whole frames.
            let _ = tail.set_len(seg.bytes);
            return Err(e);
        }
        seg.bytes += f.len() as u64;
        seg.frames += 1;
        let alarm = matches!(record, Record::Alarm(_));
        seg.non_alarms += u64::from(!alarm);
        self.next_index += 1;
        self.stats.appended += 1;
        self.unsynced = true;
        if alarm {
            self.sync()?;
        }
        self.keep_bound()?;
        Ok(index)
    }

    /// Makes what was appended durable and saves the acknowledgement cursor.
    pub fn sync(&mut self) -> io::Result<()> {
        if self.unsynced {
            if let Some(t) = &self.tail {
                t.sync_data()?;
            }
            self.unsynced = false;
        }
        if self.saved_acked != self.acked {
            let tmp = self.dir.join("cursor.tmp");
            let mut bytes = self.acked.to_le_bytes().to_vec();
            bytes.extend_from_slice(&crc32fast::hash(&bytes).to_le_bytes());
            let mut f = File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, self.dir.join(CURSOR))?;
            sync_dir(&self.dir)?;
            self.saved_acked = self.acked;
        }
        Ok(())
    }

    /// Up to `max` records from index `from` on, in order. Reading on from where the
    /// previous read ended (the publisher's way) reads only the frames it returns.
    pub fn read(&mut self, from: u64, max: usize) -> io::Result<Vec<Entry>> {
        let mut out = Vec::new();
        let from = from.max(self.acked);
        if from >= self.next_index {
            return Ok(out);
        }
        for k in 0..self.segments.len() {
            if out.len() >= max {
                break;
            }
            if self.segments.get(k + 1).is_some_and(|next| next.first <= from) {
                continue;
            }
            let seg = &self.segments[k];
            let start = match self.hint {
                Some(h) if h.first == seg.first && h.index == from && h.generation == self.generation => h.offset,
                _ => 0,
            };
            // From the hint, only what `max` frames can take; otherwise the segment.
            let len = if start > 0 { (max * (FRAME_HEADER + MAX_RECORD)) as u64 } else { seg.bytes };
            let len = len.min(seg.bytes.saturating_sub(start));
            let mut bytes = vec![0; len as usize];
            let mut f = File::open(&seg.path)?;
            f.seek(SeekFrom::Start(start))?;
            f.read_exact(&mut bytes)?;
            let (found, good) = frames(&bytes);
            if start + (good as u64) < seg.bytes && start + len == seg.bytes {
                // A frame damaged after it was written: the rest of the segment is lost.
                self.stats.corrupt += 1;
            }
            let first = seg.first;
            let mut end = start;
            for (index, rec) in found {
                if out.len() >= max {
                    break;
                }
                end += (FRAME_HEADER + rec.len()) as u64;
                if index < from {
                    continue;
                }
                match Record::parse(rec) {
                    Ok(record) => out.push(Entry { index, record }),
                    Err(_) => self.stats.corrupt += 1,
                }
                self.hint = Some(Hint { first, offset: end, index: index + 1, generation: self.generation });
            }
        }
        Ok(out)
    }

    /// Every record below `index` was delivered: segments wholly below it go.
    pub fn ack(&mut self, index: u64) -> io::Result<()> {
        if index > self.acked {
            self.acked = index.min(self.next_index);
            self.remove_acked()?;
        }
        Ok(())
    }

    /// Records appended and not yet acknowledged (an upper bound once some were dropped).
    pub fn backlog(&self) -> u64 {
        self.next_index - self.acked
    }

    pub fn acked(&self) -> u64 {
        self.acked
    }

    pub fn next_index(&self) -> u64 {
        self.next_index
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// Removes segments (other than the tail) that hold only acknowledged records.
    fn remove_acked(&mut self) -> io::Result<()> {
        let mut removed = false;
        while self.segments.len() > 1 && self.segments[1].first <= self.acked {
            if let Some(s) = self.segments.pop_front() {
                fs::remove_file(&s.path)?;
                removed = true;
            }
        }
        if removed {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    fn keep_bound(&mut self) -> io::Result<()> {
        while self.bytes() > self.limits.total_bytes && self.segments.len() > 1 {
            let last = self.segments.len() - 1;
            match (0..last).find(|&k| self.segments[k].non_alarms > 0) {
                Some(k) => self.keep_alarms_only(k)?,
                None => {
                    if let Some(s) = self.segments.pop_front() {
                        let bytes = fs::read(&s.path)?;
                        let (found, _) = frames(&bytes);
                        self.stats.dropped += found.iter().filter(|(i, _)| *i >= self.acked).count() as u64;
                        fs::remove_file(&s.path)?;
                        sync_dir(&self.dir)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Rewrites segment `k` with its alarms only (a new file renamed over the old one,
    /// so a crash leaves one or the other).
    fn keep_alarms_only(&mut self, k: usize) -> io::Result<()> {
        let path = self.segments[k].path.clone();
        let bytes = fs::read(&path)?;
        let (found, _) = frames(&bytes);
        let mut kept = Vec::new();
        let mut frames_kept = 0;
        for (index, rec) in &found {
            if is_alarm_bytes(rec) {
                kept.extend_from_slice(&frame(*index, rec));
                frames_kept += 1;
            } else if *index >= self.acked {
                self.stats.dropped += 1;
            }
        }
        let tmp = self.dir.join(format!("{}.tmp", segment_name(self.segments[k].first)));
        let mut f = File::create(&tmp)?;
        f.write_all(&kept)?;
        f.sync_all()?;
        fs::rename(&tmp, &path)?;
        sync_dir(&self.dir)?;
        let s = &mut self.segments[k];
        s.bytes = kept.len() as u64;
        s.frames = frames_kept;
        s.non_alarms = 0;
        self.generation += 1;
        Ok(())
    }
}

fn read_cursor(path: &Path) -> Option<u64> {
    let b = fs::read(path).ok()?;
    let (value, crc) = (b.get(..8)?, b.get(8..12)?);
    if crc32fast::hash(value).to_le_bytes() != crc || b.len() != 12 {
        return None;
    }
    Some(u64::from_le_bytes(value.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::tests::{alarm, beat, summary};

    /// A fresh directory under the system's temporary directory, removed on drop.
    pub struct TempDir(pub PathBuf);

    impl TempDir {
        pub fn new(what: &str) -> Self {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            let p = std::env::temp_dir().join(format!("septum-spool-{what}-{}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn small() -> Limits {
        Limits { segment_bytes: 1024, total_bytes: 4096 }
    }

    fn seqs(entries: &[Entry]) -> Vec<u64> {
        entries.iter().map(|e| e.record.header().seq.get()).collect()
    }

    fn segment_files(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("seg-"))
            .collect();
        v.sort();
        v
    }

    /// NET-003: records come back in the order appended, across segments, from any
    /// index; acknowledged segments are removed.
    #[test]
    fn records_come_back_in_order_and_acked_segments_go() {
        let d = TempDir::new("order");
        let mut s = Spool::open(&d.0, Limits { total_bytes: 64 << 10, ..small() }).unwrap();
        for seq in 0..100 {
            let r = if seq % 10 == 0 { summary(seq) } else { beat(seq) };
            assert_eq!(s.append(&r).unwrap(), seq);
        }
        assert!(segment_files(&d.0).len() > 3, "{:?}", segment_files(&d.0));
        assert_eq!(seqs(&s.read(0, 1000).unwrap()), (0..100).collect::<Vec<_>>());
        assert_eq!(seqs(&s.read(37, 5).unwrap()), [37, 38, 39, 40, 41]);
        assert_eq!(s.read(37, 5).unwrap()[0].record, beat(37));
        assert_eq!(s.backlog(), 100);

        s.ack(60).unwrap();
        assert_eq!(seqs(&s.read(0, 1000).unwrap()), (60..100).collect::<Vec<_>>(), "acked ones are not read");
        let files = segment_files(&d.0);
        assert_eq!(files.first().map(String::as_str), Some("seg-000000000000002f.log"), "{files:?}");
        s.ack(100).unwrap();
        assert!(s.read(0, 10).unwrap().is_empty());
        assert_eq!(segment_files(&d.0).len(), 1, "the tail stays");
        assert_eq!(s.stats().dropped, 0);
    }

    /// NET-003: after a restart the spool resumes: unacknowledged records are read
    /// again in order, numbering continues, and a torn last frame (a write the crash cut
    /// short) is cut off; a damaged or missing cursor re-sends rather than loses.
    #[test]
    fn resumes_after_a_crash_with_a_torn_tail() {
        let d = TempDir::new("resume");
        let mut s = Spool::open(&d.0, small()).unwrap();
        for seq in 0..50 {
            s.append(&beat(seq)).unwrap();
        }
        s.ack(20).unwrap();
        s.sync().unwrap();
        s.ack(25).unwrap(); // not saved: a crash comes first
        drop(s);

        // The crash cut the last frame short.
        let last = d.0.join(segment_files(&d.0).last().unwrap());
        let len = fs::metadata(&last).unwrap().len();
        OpenOptions::new().write(true).open(&last).unwrap().set_len(len - 5).unwrap();

        let mut s = Spool::open(&d.0, small()).unwrap();
        assert!(s.stats().torn_bytes > 0);
        // From the saved cursor (20), or past it where the unsaved acknowledgement
        // already removed a segment; 49 was torn.
        let resumed = seqs(&s.read(0, 1000).unwrap());
        assert!((20..=25).contains(&resumed[0]), "{resumed:?}");
        assert_eq!(resumed, (resumed[0]..49).collect::<Vec<_>>());
        assert_eq!(s.append(&alarm(1000)).unwrap(), 49, "numbering continues after the last whole frame");
        assert_eq!(seqs(&s.read(45, 1000).unwrap()), [45, 46, 47, 48, 1000]);
        drop(s);

        // A damaged cursor: everything still on disk is sent again.
        fs::write(d.0.join(CURSOR), b"garbage").unwrap();
        let mut s = Spool::open(&d.0, small()).unwrap();
        let again = seqs(&s.read(0, 1000).unwrap());
        assert!(again.first().is_some_and(|&f| f <= 25) && again.last() == Some(&1000), "{again:?}");

        // A bit flipped in an older segment ends that segment; the others are read.
        let files = segment_files(&d.0);
        assert!(files.len() >= 2);
        let first = d.0.join(&files[0]);
        let mut b = fs::read(&first).unwrap();
        b[FRAME_HEADER + 3] ^= 0x40;
        fs::write(&first, b).unwrap();
        let mut s = Spool::open(&d.0, small()).unwrap();
        assert_eq!(s.stats().corrupt, 1);
        let after = seqs(&s.read(0, 1000).unwrap());
        assert_eq!(after.last(), Some(&1000));
        assert!(after.windows(2).all(|w| w[0] < w[1]));
    }

    /// NET-003: the spool stays within its bound; past it the oldest beats and
    /// summaries go first and every alarm is kept, still in order with what is left.
    #[test]
    fn stays_bounded_dropping_the_oldest_non_alarms_first() {
        let d = TempDir::new("bound");
        let limits = small();
        let mut s = Spool::open(&d.0, limits).unwrap();
        let mut alarms = Vec::new();
        for seq in 0..1000 {
            if seq % 97 == 0 {
                s.append(&alarm(seq)).unwrap();
                alarms.push(seq);
            } else {
                s.append(&beat(seq)).unwrap();
            }
            assert!(s.bytes() <= limits.total_bytes, "{} bytes after {seq}", s.bytes());
        }
        let left = s.read(0, 10_000).unwrap();
        let left_seqs = seqs(&left);
        assert!(left_seqs.windows(2).all(|w| w[0] < w[1]), "in order");
        for a in &alarms {
            assert!(left_seqs.contains(a), "alarm {a} kept");
        }
        assert_eq!(left_seqs.last(), Some(&999), "the newest are kept");
        assert_eq!(s.stats().dropped, 1000 - left.len() as u64);
        assert!(s.stats().dropped > 500);

        // The bound holds across a reopen, and the kept alarms are still read.
        drop(s);
        let mut s = Spool::open(&d.0, limits).unwrap();
        assert_eq!(seqs(&s.read(0, 10_000).unwrap()), left_seqs);

        // With nothing but alarms, the oldest alarms go last of all.
        for seq in 2000..2400 {
            s.append(&alarm(seq)).unwrap();
            assert!(s.bytes() <= limits.total_bytes);
        }
        let left = seqs(&s.read(0, 10_000).unwrap());
        assert_eq!(left.last(), Some(&2399));
        assert!(left.windows(2).all(|w| w[0] < w[1]));
    }

    /// NET-003: reading on where the last read ended gives the same as a fresh scan,
    /// also across segments and after a rewrite moved frames.
    #[test]
    fn reads_that_continue_match_fresh_scans() {
        let d = TempDir::new("hint");
        let mut s = Spool::open(&d.0, Limits { total_bytes: 64 << 10, ..small() }).unwrap();
        let mut got = Vec::new();
        let mut next = 0;
        for seq in 0..300 {
            s.append(&if seq % 7 == 0 { alarm(seq) } else { beat(seq) }).unwrap();
            if seq % 5 == 4 {
                let batch = s.read(next, 3).unwrap();
                next = batch.last().map_or(next, |e| e.index + 1);
                got.extend(batch);
            }
        }
        loop {
            let batch = s.read(next, 3).unwrap();
            let Some(last) = batch.last() else { break };
            next = last.index + 1;
            got.extend(batch);
        }
        assert_eq!(got.len(), 300, "each record once, in order");
        assert!(got.windows(2).all(|w| w[1].index == w[0].index + 1));
        assert_eq!(s.stats().corrupt, 0);

        // The bound rewrites the segment a read stopped in: the next read still finds
        // its place.
        let d = TempDir::new("hint-rewrite");
        let mut s = Spool::open(&d.0, small()).unwrap();
        for seq in 0..60 {
            s.append(&if seq % 3 == 0 { alarm(seq) } else { beat(seq) }).unwrap();
        }
        let a = s.read(0, 4).unwrap();
        let next = a.last().unwrap().index + 1;
        for seq in 60..200 {
            s.append(&beat(seq)).unwrap();
        }
        assert!(s.stats().dropped > 0, "a rewrite happened");
        let continued = s.read(next, 4).unwrap();
        let fresh: Vec<Entry> = s.read(0, 10_000).unwrap().into_iter().filter(|e| e.index >= next).take(4).collect();
        assert_eq!(continued, fresh);
        assert!(continued.iter().all(|e| matches!(e.record, Record::Alarm(_)) || e.index >= 60));
    }

    #[test]
    fn frames_stop_at_the_first_damage() {
        let mut b = frame(1, beat(1).as_bytes());
        b.extend(frame(2, beat(2).as_bytes()));
        let one = frame(1, beat(1).as_bytes()).len();
        assert_eq!(frames(&b).0.len(), 2);
        assert_eq!(frames(&b[..b.len() - 1]), (vec![(1, beat(1).as_bytes())], one));
        b[one + 7] ^= 1;
        assert_eq!(frames(&b).1, one);
    }
}
