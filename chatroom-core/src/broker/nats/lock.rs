//! Locking that outlives a panic elsewhere.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, poisoned or not: the maps behind these locks stay consistent
/// at every step, so a panic while one was held leaves nothing half-done.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
