//! Row boundaries the spool learned while appending: after each batch, how many rows it held and
//! where the next row starts. A request is built by counting the rows that fit in 1 MiB; with a
//! mark near the end of that space, only the rows after the mark are walked, not every row's
//! header (about 45,000 of them per request of short lines).
//!
//! Bounded: at most [`MAX_MARKS`] are kept, the oldest dropped first. A request whose space no
//! mark falls in (a restarted daemon, a rewind, marks dropped) walks its rows as before.

use std::collections::VecDeque;

/// About 128 KiB of marks, one per appended batch. A backlog of more batches (a long outage)
/// has its oldest requests walk their rows.
const MAX_MARKS: usize = 8192;

/// A row boundary: `rows` rows end at byte `bytes` of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowMark {
    pub rows: u64,
    pub bytes: u64,
}

#[derive(Debug, Default)]
pub(super) struct RowMarks {
    marks: VecDeque<RowMark>,
}

impl RowMarks {
    /// Records the boundary after an append (marks come in increasing order).
    pub(super) fn record(&mut self, mark: RowMark) {
        if self
            .marks
            .back()
            .is_some_and(|last| last.bytes >= mark.bytes)
        {
            return;
        }
        if self.marks.len() == MAX_MARKS {
            self.marks.pop_front();
        }
        self.marks.push_back(mark);
    }

    /// The last mark after byte `after` and at most at byte `limit`. Marks at or before `after`
    /// are dropped: requests move forward through the log, and one that goes back walks.
    pub(super) fn last_between(&mut self, after: u64, limit: u64) -> Option<RowMark> {
        let passed = self.marks.partition_point(|mark| mark.bytes <= after);
        self.marks.drain(..passed);
        let within = self.marks.partition_point(|mark| mark.bytes <= limit);
        within.checked_sub(1).map(|last| self.marks[last])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(rows: u64, bytes: u64) -> RowMark {
        RowMark { rows, bytes }
    }

    #[test]
    fn the_last_mark_within_the_space_is_found_and_passed_ones_are_dropped() {
        let mut marks = RowMarks::default();
        for n in 1..=5 {
            marks.record(mark(n * 10, n * 100));
        }
        assert_eq!(marks.last_between(0, 99), None);
        assert_eq!(marks.last_between(0, 350), Some(mark(30, 300)));
        assert_eq!(marks.last_between(100, 1000), Some(mark(50, 500)));
        // Byte 100 was passed: going back finds nothing before 200.
        assert_eq!(marks.last_between(0, 150), None);
        assert_eq!(marks.last_between(200, 200), None);
        assert_eq!(marks.last_between(200, 300), Some(mark(30, 300)));
    }

    #[test]
    fn marks_are_bounded_and_keep_the_newest() {
        let mut marks = RowMarks::default();
        for n in 1..=(MAX_MARKS as u64 + 10) {
            marks.record(mark(n, n * 10));
        }
        marks.record(mark(1, 10));
        assert_eq!(marks.marks.len(), MAX_MARKS);
        assert_eq!(marks.last_between(0, 100), None);
        assert_eq!(marks.last_between(0, 110), Some(mark(11, 110)));
    }
}
