//! The window: bytes of chunk data in flight at most, four chunks per
//! connection. Under `-n auto` it follows the connections as they are
//! added, so that a session tuned to few connections does not hold (and
//! push through the caches) the bytes of many.

use std::sync::Arc;

use tokio::sync::{watch, Semaphore};
use tokio_util::task::AbortOnDropHandle;

/// Least and most bytes in flight, whatever the connections.
const LEAST: usize = 16 << 20;
const MOST: usize = 64 << 20;

/// The window for `connections` connections of `chunk_size` chunks: four
/// chunks per connection, within 16–64 MiB, and at least two chunks.
pub fn for_connections(connections: usize, chunk_size: u32) -> usize {
    let chunk = chunk_size as usize;
    connections.saturating_mul(4).saturating_mul(chunk).clamp(LEAST, MOST).max(2 * chunk)
}

/// Widens `permits`, which started at `window` bytes, to the window of
/// each new count `connections` says, until the handle is dropped. It
/// never narrows: permits given out stay given.
pub(super) fn follow(
    permits: Arc<Semaphore>,
    mut window: usize,
    mut connections: watch::Receiver<usize>,
    chunk_size: u32,
) -> AbortOnDropHandle<()> {
    AbortOnDropHandle::new(tokio::spawn(async move {
        while connections.changed().await.is_ok() {
            let wanted = for_connections(*connections.borrow_and_update(), chunk_size);
            if wanted > window {
                permits.add_permits(wanted - window);
                window = wanted;
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_chunks_per_connection_within_the_bounds() {
        assert_eq!(for_connections(1, 1 << 20), 16 << 20);
        assert_eq!(for_connections(8, 1 << 20), 32 << 20);
        assert_eq!(for_connections(64, 1 << 20), 64 << 20);
        // At least two chunks, however large.
        assert_eq!(for_connections(2, 64 << 20), 128 << 20);
    }

    #[tokio::test]
    async fn the_window_widens_with_the_connections_and_never_narrows() {
        let (count, connections) = watch::channel(4);
        let start = for_connections(4, 1 << 20);
        let permits = Arc::new(Semaphore::new(start));
        let _following = follow(permits.clone(), start, connections, 1 << 20);
        let settle = || async { tokio::task::yield_now().await };
        count.send_replace(8);
        settle().await;
        assert_eq!(permits.available_permits(), 32 << 20);
        // Bytes in flight stay taken while it widens.
        let taken = permits.clone().acquire_many_owned(4 << 20).await.unwrap();
        count.send_replace(16);
        settle().await;
        assert_eq!(permits.available_permits(), (64 << 20) - (4 << 20));
        count.send_replace(4);
        settle().await;
        assert_eq!(permits.available_permits(), (64 << 20) - (4 << 20));
        drop(taken);
        assert_eq!(permits.available_permits(), 64 << 20);
    }
}
