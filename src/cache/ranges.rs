//! [`Ranges`]: which byte ranges of an upload are written or being written. Chunks may arrive
//! concurrently and out of order; a chunk that overlaps another is refused (only the exact range
//! of a finished chunk may be sent again, which is how a client retries), and a commit needs the
//! finished chunks to cover `0..size` exactly.
//!
//! May use: std.

use std::collections::BTreeMap;

/// The ranges of one upload, keyed by start; each maps to its end (exclusive) and whether its
/// bytes are all on disk.
#[derive(Debug, Default)]
pub struct Ranges {
    ranges: BTreeMap<u64, (u64, bool)>,
}

/// Why a range cannot be claimed.
#[derive(Debug, PartialEq, Eq)]
pub struct Overlap {
    pub start: u64,
    pub end: u64,
}

impl Ranges {
    /// Claims `start..end` for a chunk being written.
    pub fn claim(&mut self, start: u64, end: u64) -> Result<(), Overlap> {
        if let Some((&other_start, &(other_end, done))) = self.ranges.range(..end).next_back() {
            let retry = other_start == start && other_end == end && done;
            if retry {
                self.ranges.insert(start, (end, false));
                return Ok(());
            }
            if other_end > start {
                return Err(Overlap {
                    start: other_start,
                    end: other_end,
                });
            }
        }
        self.ranges.insert(start, (end, false));
        Ok(())
    }

    /// Marks the chunk claimed at `start` as written.
    pub fn finish(&mut self, start: u64) {
        if let Some(range) = self.ranges.get_mut(&start) {
            range.1 = true;
        }
    }

    /// Forgets the chunk claimed at `start` (its body failed).
    pub fn abandon(&mut self, start: u64) {
        self.ranges.remove(&start);
    }

    /// True while a chunk is being written.
    pub fn busy(&self) -> bool {
        self.ranges.values().any(|(_, done)| !done)
    }

    /// None when the finished chunks cover exactly `0..size`; otherwise the first gap or excess.
    pub fn gap(&self, size: u64) -> Option<String> {
        let mut next = 0;
        for (&start, &(end, done)) in &self.ranges {
            if !done {
                return Some(format!("bytes {start}-{} are still being written", end - 1));
            }
            if start != next {
                return Some(format!("bytes {next}-{} were never written", start - 1));
            }
            next = end;
        }
        match next.cmp(&size) {
            std::cmp::Ordering::Equal => None,
            std::cmp::Ordering::Less => Some(format!(
                "{next} bytes were written, {size} committed (bytes {next}-{} missing)",
                size - 1
            )),
            std::cmp::Ordering::Greater => {
                Some(format!("{next} bytes were written, {size} committed"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_order_chunks_cover_the_whole_size() {
        let mut ranges = Ranges::default();
        ranges.claim(10, 20).unwrap();
        ranges.claim(0, 10).unwrap();
        ranges.claim(20, 25).unwrap();
        assert!(ranges.busy());
        assert!(ranges.gap(25).is_some());
        for start in [0, 10, 20] {
            ranges.finish(start);
        }
        assert_eq!(ranges.gap(25), None);
        assert!(ranges.gap(24).is_some());
        assert!(ranges.gap(26).is_some());
    }

    #[test]
    fn overlapping_chunks_are_refused_but_an_exact_retry_is_not() {
        let mut ranges = Ranges::default();
        ranges.claim(0, 10).unwrap();
        assert_eq!(ranges.claim(0, 10), Err(Overlap { start: 0, end: 10 }));
        assert!(ranges.claim(5, 15).is_err());
        assert!(ranges.claim(9, 10).is_err());
        ranges.finish(0);
        ranges.claim(0, 10).unwrap();
        assert!(ranges.claim(0, 11).is_err());
        ranges.claim(10, 11).unwrap();
    }

    #[test]
    fn an_abandoned_chunk_leaves_a_gap_that_can_be_filled_again() {
        let mut ranges = Ranges::default();
        ranges.claim(0, 10).unwrap();
        ranges.abandon(0);
        assert_eq!(
            ranges.gap(10).as_deref(),
            Some("0 bytes were written, 10 committed (bytes 0-9 missing)")
        );
        ranges.claim(0, 10).unwrap();
        ranges.finish(0);
        assert_eq!(ranges.gap(10), None);
    }
}
