//! The checkpoint policy of a service that writes continuously: how long
//! the write-ahead log may grow before the background checkpointer tries
//! to have it start over, and before the writer forces it. The service
//! calls [`SqliteStore::checkpoint_round`] from its background thread and
//! [`SqliteStore::restart_long_log`] from its recording thread; the lengths they
//! share live in a [`WalLength`].

use crate::{SqliteStore, StoreError};
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// The write-ahead log's length (pages of 4 KiB) past which the background
/// checkpointer tries to have it start over: 256 MiB. The log starts over
/// on its own at the next write after a checkpoint copied all of it while
/// no reader was on an older snapshot; under steady intake that only
/// happens when the checkpoints are frequent, so past this length the
/// checkpointer checkpoints every millisecond or so until it does.
pub const RESTART_FRAMES: i64 = 65_536;

/// The length past which the writer starts the log over itself (a RESTART
/// checkpoint, holding the batch behind it while it copies the rest, syncs,
/// and waits for readers): twice [`RESTART_FRAMES`], when the background
/// checkpointer has not managed.
pub const FORCE_RESTART_FRAMES: i64 = 2 * RESTART_FRAMES;

/// How long the background checkpointer checkpoints back to back to have a
/// long log start over, at most, before its other work.
const CATCH_UP_FOR: Duration = Duration::from_millis(100);

/// The log's length in pages as last seen, shared by the checkpointer, the
/// writers and `/metrics`.
#[derive(Debug, Default)]
pub struct WalLength(AtomicI64);

impl WalLength {
    /// The length as last seen.
    pub fn pages(&self) -> i64 {
        self.0.load(Relaxed)
    }

    fn set(&self, pages: i64) {
        self.0.store(pages, Relaxed)
    }
}

/// What one round of the background checkpointer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Round {
    /// Checkpoints taken (more than one when catching up).
    pub checkpoints: u32,
    /// The log started over during the round.
    pub restarted: bool,
    /// The round's length.
    pub elapsed: Duration,
}

impl SqliteStore {
    /// One round of the background checkpointer: copies the log back and,
    /// when it has grown past [`RESTART_FRAMES`], checkpoints every
    /// millisecond for up to 100 ms until it starts over. A checkpoint that
    /// copies all of the log while no reader is on an older snapshot lets
    /// the writer's next write start it over without waiting for anyone;
    /// with the writer committing every few milliseconds and readers
    /// reading, a checkpoint every `checkpoint_ms` almost never lands in
    /// such a moment, and back-to-back ones soon do.
    pub fn checkpoint_round(&self, wal: &WalLength) -> Result<Round, StoreError> {
        let started = Instant::now();
        let mut log = self.checkpoint()?;
        let mut round = Round {
            checkpoints: 1,
            restarted: false,
            elapsed: Duration::ZERO,
        };
        if log >= RESTART_FRAMES {
            while started.elapsed() < CATCH_UP_FOR {
                std::thread::sleep(Duration::from_millis(1));
                let before = log;
                log = match self.checkpoint() {
                    Ok(l) => l,
                    Err(e) => {
                        wal.set(log);
                        return Err(e);
                    }
                };
                round.checkpoints += 1;
                if log < before {
                    round.restarted = true;
                    break;
                }
            }
        }
        wal.set(log);
        round.elapsed = started.elapsed();
        Ok(round)
    }

    /// The writer's part: starts the log over itself when the background
    /// checkpointer has let it grow past [`FORCE_RESTART_FRAMES`]. Only the
    /// writer can do so without making writers wait. `None` when the log is
    /// short enough; else whether it started over.
    pub fn restart_long_log(&mut self, wal: &WalLength) -> Result<Option<bool>, StoreError> {
        if wal.pages() < FORCE_RESTART_FRAMES {
            return Ok(None);
        }
        let restarted = self.restart_log()?;
        if restarted {
            wal.set(0);
        }
        Ok(Some(restarted))
    }
}
