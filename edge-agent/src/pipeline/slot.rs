//! A one-frame mailbox between a camera's capture thread and the pipeline.
//!
//! The capture side never waits: when the previous frame has not been taken
//! yet, it is replaced (newest wins) and the replacement is counted as a
//! drop. So a camera can never get more than one frame ahead of the
//! pipeline, and memory stays bounded whatever the camera rate. Replays
//! (directories of files) can ask for the lossless mode instead, where the
//! capture side waits for the slot to empty.

use std::sync::{Condvar, Mutex};

use tokio::sync::Notify;

/// What the capture side does when the slot is still full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Replace the waiting frame (live cameras).
    ReplaceOldest,
    /// Block until the pipeline takes the waiting frame (replays, tests).
    Wait,
}

struct State<T> {
    value: Option<T>,
    closed: bool,
}

/// The mailbox. `put` is called from a blocking capture thread, `take` from
/// an async task.
pub struct Slot<T> {
    state: Mutex<State<T>>,
    emptied: Condvar,
    filled: Notify,
    mode: WhenFull,
}

/// What `put` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Put {
    Stored,
    /// The older frame waiting in the slot was dropped.
    Replaced,
    /// The slot is closed: the pipeline is shutting down.
    Closed,
}

impl<T> Slot<T> {
    pub fn new(mode: WhenFull) -> Self {
        Self {
            state: Mutex::new(State {
                value: None,
                closed: false,
            }),
            emptied: Condvar::new(),
            filled: Notify::new(),
            mode,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        // The state is two plain fields; a panic elsewhere cannot leave them
        // inconsistent, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Offers a frame (blocking in `Wait` mode while the slot is full).
    pub fn put(&self, value: T) -> Put {
        let mut state = self.lock();
        if self.mode == WhenFull::Wait {
            while state.value.is_some() && !state.closed {
                state = self.emptied.wait(state).unwrap_or_else(|e| e.into_inner());
            }
        }
        if state.closed {
            return Put::Closed;
        }
        let replaced = state.value.replace(value).is_some();
        drop(state);
        self.filled.notify_one();
        if replaced { Put::Replaced } else { Put::Stored }
    }

    /// Waits for the next frame; `None` once the slot is closed and empty.
    pub async fn take(&self) -> Option<T> {
        loop {
            let notified = self.filled.notified();
            {
                let mut state = self.lock();
                if let Some(value) = state.value.take() {
                    drop(state);
                    self.emptied.notify_all();
                    return Some(value);
                }
                if state.closed {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// No more frames: wakes both sides. A frame already waiting can still
    /// be taken.
    pub fn close(&self) {
        self.lock().closed = true;
        self.emptied.notify_all();
        self.filled.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn newest_wins_and_replacements_are_reported() {
        let slot = Slot::new(WhenFull::ReplaceOldest);
        assert_eq!(slot.put(1), Put::Stored);
        assert_eq!(slot.put(2), Put::Replaced);
        assert_eq!(slot.put(3), Put::Replaced);
        assert_eq!(slot.take().await, Some(3));
        slot.close();
        assert_eq!(slot.take().await, None);
        assert_eq!(slot.put(4), Put::Closed);
    }

    #[tokio::test]
    async fn wait_mode_loses_nothing() {
        let slot = Arc::new(Slot::new(WhenFull::Wait));
        let producer = {
            let slot = slot.clone();
            std::thread::spawn(move || {
                for i in 0..200 {
                    assert_ne!(slot.put(i), Put::Replaced);
                }
                slot.close();
            })
        };
        let mut got = Vec::new();
        while let Some(v) = slot.take().await {
            got.push(v);
        }
        producer.join().unwrap();
        assert_eq!(got, (0..200).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn close_wakes_a_waiting_taker_and_a_blocked_producer() {
        let slot = Arc::new(Slot::<u32>::new(WhenFull::Wait));
        let taker = {
            let slot = slot.clone();
            tokio::spawn(async move { slot.take().await })
        };
        tokio::task::yield_now().await;
        slot.close();
        assert_eq!(taker.await.unwrap(), None);

        let full = Arc::new(Slot::new(WhenFull::Wait));
        full.put(1);
        let blocked = {
            let full = full.clone();
            std::thread::spawn(move || full.put(2))
        };
        full.close();
        assert_eq!(blocked.join().unwrap(), Put::Closed);
    }
}
