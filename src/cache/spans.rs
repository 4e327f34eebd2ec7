//! The newest entry of each span of the index, so a restore-key prefix that matches thousands of
//! entries is answered from a few hundred rows instead of every match.
//!
//! The `entries` table is cut into spans: an entry whose composite key hashes to a multiple of
//! `every` (an *anchor*) starts one, which runs up to the next anchor; the empty key anchors the
//! span before the first. The `spans` table maps each anchor to the (creation time, id) of the
//! newest entry in its span. A prefix range reads the spans lying wholly inside it and scans only
//! the two partial ones at its edges. Anchors depend on the key alone, never on insertion order,
//! so inserting or removing an entry changes its own span only, or splits or joins two.
//!
//! Every function runs inside the caller's transaction; the index keeps both tables in step.
//!
//! May use: `redb`, `super::index` (record encoding), `super::error`, std.

use std::ops::Bound;

use redb::{ReadableTable, Table};

use super::error::CacheError;
use super::index::{Record, decode_record};

/// The anchor of the span before the first keyed anchor; sorts before every composite key.
const FIRST_ANCHOR: &[u8] = b"";

/// The newest entry of a span: (creation time in µs, id). Later creation wins, then higher id.
pub type Newest = (u64, u64);

type Entries<'t> = Table<'t, &'static [u8], &'static [u8]>;

/// Whether `composite` starts a span. FNV-1a, fixed here, so anchors never move between
/// versions or processes (a change would need a rebuild, see [`rebuild`]).
pub fn is_anchor(composite: &[u8], every: u64) -> bool {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in composite {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash.is_multiple_of(every.max(1))
}

/// The newer of two candidates.
fn newer(a: Option<Newest>, b: Option<Newest>) -> Option<Newest> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn of(record: Record) -> Newest {
    (record.created_us, record.id)
}

fn encode(newest: Option<Newest>) -> Vec<u8> {
    newest.map_or_else(Vec::new, |(created_us, id)| {
        let mut out = Vec::with_capacity(16);
        out.extend_from_slice(&created_us.to_be_bytes());
        out.extend_from_slice(&id.to_be_bytes());
        out
    })
}

/// A span's stored newest; an empty value is an empty span.
pub fn decode(bytes: &[u8]) -> Option<Newest> {
    let created_us = u64::from_be_bytes(bytes.get(0..8)?.try_into().ok()?);
    let id = u64::from_be_bytes(bytes.get(8..16)?.try_into().ok()?);
    Some((created_us, id))
}

/// The newest entry whose composite key is in `range`, by reading every row of it.
fn scan(
    entries: &impl ReadableTable<&'static [u8], &'static [u8]>,
    range: (Bound<&[u8]>, Bound<&[u8]>),
) -> Result<Option<Newest>, CacheError> {
    let mut best = None;
    for row in entries.range::<&[u8]>(range).map_err(CacheError::index)? {
        let (_, value) = row.map_err(CacheError::index)?;
        best = newer(best, decode_record(value.value()).map(of));
    }
    Ok(best)
}

/// The newest entry in `[start, end)`: the stored newest of every span lying wholly inside, and
/// a scan of the partial spans at both edges.
pub fn newest_in(
    entries: &impl ReadableTable<&'static [u8], &'static [u8]>,
    spans: &impl ReadableTable<&'static [u8], &'static [u8]>,
    start: &[u8],
    end: &[u8],
) -> Result<Option<Newest>, CacheError> {
    let mut anchors = spans.range(start..end).map_err(CacheError::index)?;
    let Some(first) = anchors.next() else {
        return scan(entries, (Bound::Included(start), Bound::Excluded(end)));
    };
    let (anchor, value) = first.map_err(CacheError::index)?;
    let mut best = scan(
        entries,
        (Bound::Included(start), Bound::Excluded(anchor.value())),
    )?;
    // The span of the last anchor may reach past `end`: scanned, not taken whole.
    let mut last = anchor.value().to_vec();
    let mut last_newest = value.value().to_vec();
    for row in anchors {
        let (anchor, value) = row.map_err(CacheError::index)?;
        best = newer(best, decode(&last_newest));
        last.clear();
        last.extend_from_slice(anchor.value());
        last_newest.clear();
        last_newest.extend_from_slice(value.value());
    }
    let tail = scan(entries, (Bound::Included(&last), Bound::Excluded(end)))?;
    Ok(newer(best, tail))
}

/// The anchor at or before `composite` (inclusive) or strictly before it, and its span's newest.
fn anchor_before(
    spans: &Entries<'_>,
    composite: &[u8],
    inclusive: bool,
) -> Result<(Vec<u8>, Option<Newest>), CacheError> {
    let upper = if inclusive {
        Bound::Included(composite)
    } else {
        Bound::Excluded(composite)
    };
    let found = spans
        .range::<&[u8]>((Bound::Unbounded, upper))
        .map_err(CacheError::index)?
        .next_back()
        .transpose()
        .map_err(CacheError::index)?
        .map(|(anchor, value)| (anchor.value().to_vec(), decode(value.value())));
    // The first anchor is always there (see `rebuild`); an index without it gets it back here.
    Ok(found.unwrap_or_else(|| (FIRST_ANCHOR.to_vec(), None)))
}

/// Recomputes the span starting at `anchor` from its rows and stores it.
fn recompute(
    entries: &Entries<'_>,
    spans: &mut Entries<'_>,
    anchor: &[u8],
) -> Result<(), CacheError> {
    let next = spans
        .range::<&[u8]>((Bound::Excluded(anchor), Bound::Unbounded))
        .map_err(CacheError::index)?
        .next()
        .transpose()
        .map_err(CacheError::index)?
        .map(|(next, _)| next.value().to_vec());
    let upper = next.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
    let newest = scan(entries, (Bound::Included(anchor), upper))?;
    spans
        .insert(anchor, encode(newest).as_slice())
        .map_err(CacheError::index)?;
    Ok(())
}

/// Takes an entry just written to `entries` into its span (splitting one if it is an anchor).
pub fn added(
    entries: &Entries<'_>,
    spans: &mut Entries<'_>,
    composite: &[u8],
    record: Record,
    every: u64,
) -> Result<(), CacheError> {
    if is_anchor(composite, every) {
        let (before, _) = anchor_before(spans, composite, false)?;
        // Inserted first, so the span before now ends here.
        spans
            .insert(composite, encode(None).as_slice())
            .map_err(CacheError::index)?;
        recompute(entries, spans, composite)?;
        return recompute(entries, spans, &before);
    }
    let (anchor, newest) = anchor_before(spans, composite, true)?;
    let candidate = newer(newest, Some(of(record)));
    if candidate != newest {
        spans
            .insert(anchor.as_slice(), encode(candidate).as_slice())
            .map_err(CacheError::index)?;
    }
    Ok(())
}

/// Lets go of an entry just removed from `entries` (joining two spans if it was an anchor).
pub fn removed(
    entries: &Entries<'_>,
    spans: &mut Entries<'_>,
    composite: &[u8],
    record: Record,
    every: u64,
) -> Result<(), CacheError> {
    if is_anchor(composite, every) {
        spans.remove(composite).map_err(CacheError::index)?;
        let (before, _) = anchor_before(spans, composite, false)?;
        return recompute(entries, spans, &before);
    }
    let (anchor, newest) = anchor_before(spans, composite, true)?;
    if newest == Some(of(record)) {
        recompute(entries, spans, &anchor)?;
    }
    Ok(())
}

/// Rebuilds every span from `entries` in one pass (a new index, or one written before spans or
/// with another `every`).
pub fn rebuild(
    entries: &Entries<'_>,
    spans: &mut Entries<'_>,
    every: u64,
) -> Result<(), CacheError> {
    spans.retain(|_, _| false).map_err(CacheError::index)?;
    let mut anchor = FIRST_ANCHOR.to_vec();
    let mut newest = None;
    let mut computed = Vec::new();
    for row in entries.iter().map_err(CacheError::index)? {
        let (composite, value) = row.map_err(CacheError::index)?;
        let composite = composite.value();
        if is_anchor(composite, every) {
            computed.push((std::mem::replace(&mut anchor, composite.to_vec()), newest));
            newest = None;
        }
        newest = newer(newest, decode_record(value.value()).map(of));
    }
    computed.push((anchor, newest));
    for (anchor, newest) in computed {
        spans
            .insert(anchor.as_slice(), encode(newest).as_slice())
            .map_err(CacheError::index)?;
    }
    Ok(())
}

/// What [`rebuild`] would store, for tests to compare with what the updates kept.
#[cfg(test)]
pub fn expected(
    entries: &impl ReadableTable<&'static [u8], &'static [u8]>,
    every: u64,
) -> Vec<(Vec<u8>, Option<Newest>)> {
    let mut out = vec![(FIRST_ANCHOR.to_vec(), None)];
    for row in entries.iter().unwrap() {
        let (composite, value) = row.unwrap();
        if is_anchor(composite.value(), every) {
            out.push((composite.value().to_vec(), None));
        }
        if let Some(last) = out.last_mut() {
            last.1 = newer(last.1, decode_record(value.value()).map(of));
        }
    }
    out
}
