//! Locking a std `Mutex` or `RwLock` without a panic path. Every such lock in the runner guards
//! plain data for a few statements that do not panic halfway, so a lock poisoned by a panic
//! elsewhere still holds valid values: taking it over is right, and a second panic is not.

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// `mutex.lock()`, taking over a poisoned lock.
#[allow(clippy::disallowed_methods)] // The one place that may call it: clippy.toml sends others here.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `rw_lock.read()`, taking over a poisoned lock.
#[allow(clippy::disallowed_methods)] // The one place that may call it.
pub fn read<T>(rw_lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    rw_lock.read().unwrap_or_else(PoisonError::into_inner)
}

/// `rw_lock.write()`, taking over a poisoned lock.
#[allow(clippy::disallowed_methods)] // The one place that may call it.
pub fn write<T>(rw_lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    rw_lock.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    #[test]
    #[allow(clippy::disallowed_methods)] // It poisons the lock the way a panicking holder would.
    fn a_poisoned_lock_is_taken_over_with_its_value() {
        let mutex = Arc::new(Mutex::new(7));
        let poisoner = Arc::clone(&mutex);
        let _ = std::thread::spawn(move || {
            let _guard = poisoner.lock();
            panic!("poison the lock");
        })
        .join();
        assert!(mutex.is_poisoned());
        assert_eq!(*super::lock(&mutex), 7);
    }
}
