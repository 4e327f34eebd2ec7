//! The metrics server's open connections and which of them are idle (no request in progress), so
//! that when every connection slot is taken the server can close the one idle longest instead of
//! leaving a scrape in the backlog until idle connections time out one by one. May use: tokio.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The open connections, each idle since a known instant or busy with a request.
#[derive(Debug, Default)]
pub struct IdleConnections {
    entries: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    next_id: u64,
    by_id: HashMap<u64, Entry>,
}

#[derive(Debug)]
struct Entry {
    /// Requests in progress (HTTP/1 serves one at a time; counted so a mismatch cannot go negative).
    n_requests: u32,
    /// When the last request ended (or the connection was accepted); `None` while busy.
    idle_since: Option<Instant>,
    evict: CancellationToken,
}

/// What [`IdleConnections::evict_oldest`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// The connection idle longest was told to close.
    Evicted,
    /// Every idle connection is younger than the minimum; the oldest reaches it at this instant.
    NotBefore(Instant),
    /// Every connection is busy with a request.
    NoneIdle,
}

/// One connection's entry; removed when dropped (the connection's task ended).
#[derive(Debug)]
pub struct ConnectionEntry {
    id: u64,
    connections: Arc<IdleConnections>,
    /// Cancelled when the server wants this connection closed to free its slot.
    pub evicted: CancellationToken,
}

impl IdleConnections {
    /// Registers a connection just accepted: idle from now.
    pub fn register(self: &Arc<Self>) -> ConnectionEntry {
        let evict = CancellationToken::new();
        let mut entries = self.lock();
        let id = entries.next_id;
        entries.next_id += 1;
        entries.by_id.insert(
            id,
            Entry {
                n_requests: 0,
                idle_since: Some(Instant::now()),
                evict: evict.clone(),
            },
        );
        ConnectionEntry {
            id,
            connections: Arc::clone(self),
            evicted: evict,
        }
    }

    /// Tells the connection idle longest to close, if it has been idle for `min_idle` at least.
    /// The minimum spares a client accepted a moment ago whose request is not read yet.
    pub fn evict_oldest(&self, min_idle: Duration) -> Eviction {
        let now = Instant::now();
        let mut entries = self.lock();
        let oldest = entries
            .by_id
            .iter()
            .filter_map(|(id, entry)| entry.idle_since.map(|since| (since, *id)))
            .min();
        let Some((since, id)) = oldest else {
            return Eviction::NoneIdle;
        };
        if now.duration_since(since) < min_idle {
            return Eviction::NotBefore(since + min_idle);
        }
        if let Some(entry) = entries.by_id.remove(&id) {
            entry.evict.cancel();
        }
        Eviction::Evicted
    }

    #[cfg(test)]
    fn n_connections(&self) -> usize {
        self.lock().by_id.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        crate::sync::lock(&self.entries)
    }
}

impl ConnectionEntry {
    /// A request arrived on this connection.
    pub fn request_started(&self) {
        if let Some(entry) = self.connections.lock().by_id.get_mut(&self.id) {
            entry.n_requests += 1;
            entry.idle_since = None;
        }
    }

    /// A response head was produced; the connection is idle again once none is in progress.
    pub fn request_ended(&self) {
        if let Some(entry) = self.connections.lock().by_id.get_mut(&self.id) {
            entry.n_requests = entry.n_requests.saturating_sub(1);
            if entry.n_requests == 0 {
                entry.idle_since = Some(Instant::now());
            }
        }
    }
}

impl Drop for ConnectionEntry {
    fn drop(&mut self) {
        self.connections.lock().by_id.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN_IDLE: Duration = Duration::from_millis(250);

    #[tokio::test(start_paused = true)]
    async fn the_connection_idle_longest_goes_first_and_a_busy_one_never() {
        let connections = Arc::new(IdleConnections::default());
        let first = connections.register();
        tokio::time::advance(Duration::from_millis(100)).await;
        let second = connections.register();
        tokio::time::advance(Duration::from_millis(100)).await;
        let third = connections.register();
        first.request_started();
        // The oldest idle one (second) is 100 ms old: not yet.
        assert_eq!(
            connections.evict_oldest(MIN_IDLE),
            Eviction::NotBefore(Instant::now() + Duration::from_millis(150))
        );
        tokio::time::advance(Duration::from_millis(150)).await;
        assert_eq!(connections.evict_oldest(MIN_IDLE), Eviction::Evicted);
        assert!(second.evicted.is_cancelled());
        assert!(!first.evicted.is_cancelled() && !third.evicted.is_cancelled());
        // first finished its request just now: third has been idle longer.
        first.request_ended();
        tokio::time::advance(Duration::from_millis(250)).await;
        assert_eq!(connections.evict_oldest(MIN_IDLE), Eviction::Evicted);
        assert!(third.evicted.is_cancelled());
        assert!(!first.evicted.is_cancelled());
        first.request_started();
        assert_eq!(connections.evict_oldest(MIN_IDLE), Eviction::NoneIdle);
        drop((first, second, third));
        assert_eq!(connections.n_connections(), 0);
    }
}
