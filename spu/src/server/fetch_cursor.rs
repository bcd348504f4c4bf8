//! Where a fetch stands and what it may still send, without its I/O: the
//! offsets and budgets of `serve_fetch` (`fetch.rs`), which only reads the
//! chunks, runs the modules and writes the frames this cursor asks for.
//! Tested without sockets or segments.

/// The progress of one fetch through its partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FetchCursor {
    /// The next offset to read.
    next: u64,
    /// Records the consumer still wants (`None`: no limit).
    remaining: Option<u64>,
    /// The last offset the consumer wants, inclusive (`None`: no limit).
    last: Option<u64>,
}

impl FetchCursor {
    pub(super) fn new(first: u64, max_records: Option<u64>, last: Option<u64>) -> Self {
        Self {
            next: first,
            remaining: max_records,
            last,
        }
    }

    /// The next offset to read (where the fetch ends, once it is done).
    pub(super) fn next(&self) -> u64 {
        self.next
    }

    /// Whether the consumer has all it asked for: its record count, or its
    /// last offset.
    pub(super) fn done(&self) -> bool {
        self.remaining == Some(0) || self.last.is_some_and(|last| self.next > last)
    }

    /// Whether committed records wait to be read: the partition's committed
    /// end (`high_watermark`) is past the cursor.
    pub(super) fn behind(&self, high_watermark: u64) -> bool {
        self.next < high_watermark
    }

    /// The end (exclusive) of the chunk's records the consumer wants: the
    /// chunk's stored batches end at `chunk_end`, and the fetch's last
    /// offset may come first.
    fn within_last(&self, chunk_end: u64) -> u64 {
        self.last
            .map_or(chunk_end, |last| chunk_end.min(last.saturating_add(1)))
    }

    /// Plain records: where to stop in a chunk ending at `chunk_end`, so as
    /// not to send more than the consumer's record count either (offsets
    /// are contiguous, so the next `n` records end `n` on).
    pub(super) fn plain_until(&self, chunk_end: u64) -> u64 {
        let until = self.within_last(chunk_end);
        match self.remaining {
            Some(n) => until.min(self.next.saturating_add(n)),
            None => until,
        }
    }

    /// After `sent` plain records up to `until` (from [`Self::plain_until`]).
    pub(super) fn sent_plain(&mut self, until: u64, sent: u64) {
        if let Some(n) = self.remaining.as_mut() {
            *n = n.saturating_sub(sent);
        }
        self.next = until;
    }

    /// Through modules: the chain reads a chunk's whole batches up to the
    /// fetch's last offset (a module may drop or add records, so the count
    /// is applied to what it returns, [`Self::took_from_modules`]).
    pub(super) fn modules_until(&self, chunk_end: u64) -> u64 {
        self.within_last(chunk_end)
    }

    /// The offset to read the next chunk from while the modules run over
    /// the one ending at `until`, if the fetch will want it.
    pub(super) fn read_ahead_from(&self, until: u64, high_watermark: u64) -> Option<u64> {
        let wanted = until < high_watermark && self.last.is_none_or(|last| until <= last);
        wanted.then_some(until)
    }

    /// After the modules read up to `until` and returned `records` (by
    /// offset, `offset`): keeps those the consumer still wants, and resumes
    /// after the chunk, or at the first record not delivered when its count
    /// ran out first.
    pub(super) fn took_from_modules<T>(
        &mut self,
        until: u64,
        records: &mut Vec<T>,
        offset: impl Fn(&T) -> u64,
    ) {
        self.next = until;
        if let Some(n) = self.remaining.as_mut() {
            let keep = (*n).min(records.len() as u64) as usize;
            if keep < records.len() {
                self.next = offset(&records[keep]);
            }
            records.truncate(keep);
            *n -= records.len() as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unbounded_fetch_takes_whole_chunks_and_never_ends() {
        let mut c = FetchCursor::new(10, None, None);
        assert!(!c.done());
        assert!(c.behind(11) && !c.behind(10));
        assert_eq!(c.plain_until(50), 50);
        c.sent_plain(50, 40);
        assert_eq!(c.next(), 50);
        assert!(!c.done());
    }

    #[test]
    fn a_record_count_stops_plain_reads_at_that_many_records() {
        let mut c = FetchCursor::new(10, Some(5), None);
        assert_eq!(c.plain_until(100), 15);
        c.sent_plain(15, 5);
        assert!(c.done());
        assert_eq!(c.next(), 15);
        // Across two chunks.
        let mut c = FetchCursor::new(0, Some(30), None);
        assert_eq!(c.plain_until(20), 20);
        c.sent_plain(20, 20);
        assert_eq!(c.plain_until(40), 30);
        c.sent_plain(30, 10);
        assert!(c.done());
    }

    #[test]
    fn a_last_offset_is_inclusive_and_ends_the_fetch_past_it() {
        let mut c = FetchCursor::new(0, None, Some(9));
        assert_eq!(c.plain_until(100), 10);
        assert_eq!(c.modules_until(100), 10);
        assert_eq!(c.modules_until(5), 5);
        c.sent_plain(10, 10);
        assert!(c.done());
        // The last offset and a count: whichever comes first.
        let c = FetchCursor::new(0, Some(3), Some(9));
        assert_eq!(c.plain_until(100), 3);
        // A last offset at the very end of the offset space.
        let c = FetchCursor::new(u64::MAX - 1, None, Some(u64::MAX));
        assert_eq!(c.plain_until(u64::MAX), u64::MAX);
    }

    #[test]
    fn module_output_is_cut_to_the_count_and_the_fetch_resumes_at_the_first_not_sent() {
        // A filter kept offsets 3, 5, 8 and 9 of a chunk read up to 12;
        // the consumer wants 2 more records.
        let mut c = FetchCursor::new(0, Some(2), None);
        let until = c.modules_until(12);
        let mut records = vec![3u64, 5, 8, 9];
        c.took_from_modules(until, &mut records, |o| *o);
        assert_eq!(records, vec![3, 5]);
        assert_eq!(c.next(), 8, "resumes at the first record not delivered");
        assert!(c.done());
        // Fewer records than wanted: the whole chunk is consumed.
        let mut c = FetchCursor::new(0, Some(10), None);
        let mut records = vec![3u64, 5];
        c.took_from_modules(12, &mut records, |o| *o);
        assert_eq!((records.len(), c.next(), c.done()), (2, 12, false));
        // No count: everything goes, the cursor moves past the chunk.
        let mut c = FetchCursor::new(0, None, None);
        let mut records = vec![1u64, 2, 3];
        c.took_from_modules(12, &mut records, |o| *o);
        assert_eq!((records.len(), c.next()), (3, 12));
    }

    #[test]
    fn the_next_chunk_is_read_ahead_only_if_the_fetch_will_want_it() {
        let c = FetchCursor::new(0, None, None);
        assert_eq!(c.read_ahead_from(10, 20), Some(10));
        assert_eq!(
            c.read_ahead_from(20, 20),
            None,
            "nothing committed there yet"
        );
        let c = FetchCursor::new(0, None, Some(15));
        assert_eq!(c.read_ahead_from(10, 20), Some(10));
        assert_eq!(c.read_ahead_from(16, 20), None, "past the last offset");
    }
}
