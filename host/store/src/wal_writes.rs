//! A connection's writes to the write-ahead log, gathered into one system
//! call per transaction (part of the [`crate::mapped`] shim, Linux only).
//!
//! SQLite appends a transaction to the log frame by frame, and each frame
//! with two `pwrite` calls: its 24-byte header, then the page. A batch of
//! the service's recording thread writes about 60 frames, so 120 calls,
//! each taking the file's lock and going through the file system's write
//! path for the one or two pages it touches. The shim keeps a connection's consecutive writes
//! to its log in memory and writes them with one call when:
//!
//! - the transaction's commit frame is in the buffer — a frame whose
//!   header's second field, the database's size after the commit, is not
//!   zero (the WAL file format). SQLite publishes a transaction's frames to
//!   other connections (in the shared index) only after writing its
//!   commit frame, so every frame another connection may read is in the
//!   file by then;
//! - the connection asks anything else of the file: a read (of a page it
//!   wrote earlier in the transaction), its size, a sync, a truncation, a
//!   file control, closing it;
//! - a write does not continue the buffered ones (a frame rewritten in
//!   place, the log starting over);
//! - the buffer holds [`MAX`] bytes.
//!
//! What is buffered at any moment is part of a transaction that has not
//! committed: if the process dies, it is lost, as its frames would be
//! ignored by recovery anyway. Commits are as durable as before (the
//! `synchronous` setting's syncs write the buffer first), and no reader
//! can see a frame that is not in the file.

// Elsewhere the shim is not registered and this is unused.
#![cfg_attr(not(target_os = "linux"), allow(dead_code))]

use rusqlite::ffi;
use std::ffi::{c_int, c_void};

use crate::mapped::Tables;

/// Buffered bytes past which they are written (a large transaction goes to
/// the log in steps of this size).
pub(crate) const MAX: usize = 1 << 20;

/// The most the default VFS writes in one call: its `unixWrite` takes
/// the amount modulo 128 KiB (`nBuf &= 0x1ffff`), so a larger buffer is
/// passed on in chunks of 31 pages.
const CHUNK: usize = 31 * 4096;

/// A WAL frame header's size; its bytes 4..8 are the database's size in
/// pages after the commit, for a commit frame, and zero otherwise.
const FRAME_HEADER: usize = 24;

/// What the shim keeps after the default VFS's file, for a log file.
pub(crate) struct WalWrites {
    /// The default VFS's methods for this file.
    inner: *const ffi::sqlite3_io_methods,
    /// Bytes written by SQLite and not yet passed on, in file order.
    buf: Vec<u8>,
    /// Where `buf` starts in the file.
    at: i64,
    /// The commit frame's header is in `buf`: write once its page is.
    commit: bool,
    /// Writes SQLite made, and writes passed on (for tests).
    writes: u64,
    passed: u64,
}

/// A log file's tables: the entries that write, or that must see what
/// was written.
static TABLES: Tables = Tables::new(|t| {
    t.xClose = Some(close);
    t.xRead = Some(read);
    t.xWrite = Some(write);
    t.xTruncate = Some(truncate);
    t.xSync = Some(sync);
    t.xFileSize = Some(file_size);
    t.xFileControl = Some(file_control);
});

/// Takes over `file`, a log file the default VFS just opened, with the
/// shim's space for it at `offset`.
///
/// # Safety
/// `file` must be an open file of the shim's VFS, whose files are at least
/// `offset + size_of::<WalWrites>()` bytes, suitably aligned at `offset`.
pub(crate) unsafe fn install(file: *mut ffi::sqlite3_file, offset: usize) {
    // SAFETY: the default VFS set the methods of the file it opened.
    let inner = unsafe { (*file).pMethods };
    if inner.is_null() {
        return;
    }
    // SAFETY: the state's space follows the default VFS's file.
    unsafe {
        file.cast::<u8>()
            .add(offset)
            .cast::<WalWrites>()
            .write(WalWrites {
                inner,
                buf: Vec::new(),
                at: 0,
                commit: false,
                writes: 0,
                passed: 0,
            });
        (*file).pMethods = TABLES.made_from(inner);
    }
}

/// The shim's state of `file`.
///
/// # Safety
/// `file` must be a log file taken over by [`install`].
unsafe fn state<'a>(file: *mut ffi::sqlite3_file) -> &'a mut WalWrites {
    // SAFETY: as `install` wrote it.
    unsafe {
        &mut *file
            .cast::<u8>()
            .add(crate::mapped::offset())
            .cast::<WalWrites>()
    }
}

impl WalWrites {
    /// Passes the buffered bytes on; SQLite's result code. The buffer is
    /// empty afterwards, even when the write failed: SQLite rolls the
    /// transaction back, and its frames are never read.
    ///
    /// # Safety
    /// `file` must be the file this state belongs to.
    unsafe fn flush(&mut self, file: *mut ffi::sqlite3_file) -> c_int {
        self.commit = false;
        if self.buf.is_empty() {
            return ffi::SQLITE_OK;
        }
        let mut rc = ffi::SQLITE_OK;
        let mut at = self.at;
        for chunk in self.buf.chunks(CHUNK) {
            self.passed += 1;
            // SAFETY: the default VFS's own method on its own file; the
            // chunk holds `chunk.len()` (< CHUNK) bytes.
            rc = match unsafe { (*self.inner).xWrite } {
                Some(f) => unsafe { f(file, chunk.as_ptr().cast(), chunk.len() as c_int, at) },
                None => ffi::SQLITE_IOERR_WRITE,
            };
            if rc != ffi::SQLITE_OK {
                break;
            }
            at += chunk.len() as i64;
        }
        self.buf.clear();
        rc
    }
}

/// Writes what is buffered, then calls the default method `$method` with
/// the arguments; a failed write's code is returned instead.
macro_rules! after_flush {
    ($file:expr, $method:ident, $missing:expr $(, $arg:expr)*) => {{
        // SAFETY: `file` was taken over by `install`.
        let st = unsafe { state($file) };
        // SAFETY: its own file.
        let rc = unsafe { st.flush($file) };
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        // SAFETY: the default VFS's own method on its own file.
        match unsafe { (*st.inner).$method } {
            Some(f) => unsafe { f($file $(, $arg)*) },
            None => $missing,
        }
    }};
}

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: `file` was taken over by `install`.
    let st = unsafe { state(file) };
    st.writes += 1;
    // The commit frame's page, whatever is written out before it.
    let commit_page = st.commit;
    let Ok(n) = usize::try_from(amount) else {
        return after_flush!(file, xWrite, ffi::SQLITE_IOERR_WRITE, data, amount, offset);
    };
    let follows = i64::try_from(st.buf.len())
        .ok()
        .and_then(|len| st.at.checked_add(len))
        == Some(offset);
    if !follows || st.buf.is_empty() {
        // SAFETY: its own file.
        let rc = unsafe { st.flush(file) };
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        st.at = offset;
    }
    // SAFETY: SQLite passes `amount` readable bytes (xWrite's contract).
    let bytes = unsafe { std::slice::from_raw_parts(data.cast::<u8>(), n) };
    st.buf.extend_from_slice(bytes);
    if n == FRAME_HEADER && bytes[4..8] != [0; 4] {
        // A commit frame's header: its page comes next.
        st.commit = true;
        return ffi::SQLITE_OK;
    }
    if commit_page || st.buf.len() >= MAX {
        // SAFETY: its own file.
        return unsafe { st.flush(file) };
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn read(
    file: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    after_flush!(file, xRead, ffi::SQLITE_IOERR_READ, buf, amount, offset)
}

unsafe extern "C" fn truncate(file: *mut ffi::sqlite3_file, size: ffi::sqlite3_int64) -> c_int {
    after_flush!(file, xTruncate, ffi::SQLITE_IOERR_TRUNCATE, size)
}

unsafe extern "C" fn sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    after_flush!(file, xSync, ffi::SQLITE_IOERR_FSYNC, flags)
}

unsafe extern "C" fn file_size(
    file: *mut ffi::sqlite3_file,
    size: *mut ffi::sqlite3_int64,
) -> c_int {
    after_flush!(file, xFileSize, ffi::SQLITE_IOERR_FSTAT, size)
}

unsafe extern "C" fn file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    after_flush!(file, xFileControl, ffi::SQLITE_NOTFOUND, op, arg)
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: `file` was taken over by `install`.
    let st = unsafe { state(file) };
    // SAFETY: its own file.
    let flushed = unsafe { st.flush(file) };
    let inner = st.inner;
    // The state's memory is SQLite's, freed after this: its buffer is
    // given back now.
    drop(std::mem::take(&mut st.buf));
    // SAFETY: the default VFS's own method on its own file.
    let rc = match unsafe { (*inner).xClose } {
        Some(f) => unsafe { f(file) },
        None => ffi::SQLITE_OK,
    };
    if flushed != ffi::SQLITE_OK {
        flushed
    } else {
        rc
    }
}

/// Writes SQLite made to a connection's log, and writes passed on to the
/// file; `None` when the log is not the shim's (or not open).
#[cfg(test)]
pub(crate) fn counts(conn: &rusqlite::Connection) -> Option<(u64, u64)> {
    // In WAL mode the journal pointer is the log's.
    let file = crate::mapped::file_of(conn, ffi::SQLITE_FCNTL_JOURNAL_POINTER, &TABLES)?;
    // SAFETY: the connection's log, taken over by `install`.
    let st = unsafe { state(file) };
    Some((st.writes, st.passed))
}

#[cfg(test)]
#[cfg(target_os = "linux")]
mod tests {
    use super::*;
    use crate::mapped::{NAME, vfs};
    use crate::test_support::{TempStore, fill};
    use rusqlite::Connection;

    fn open(path: &str) -> Connection {
        assert!(vfs().is_some(), "the shim registers on Linux");
        let c = Connection::open_with_flags_and_vfs(path, Default::default(), NAME)
            .unwrap_or_else(|e| panic!("open {path}: {e}"));
        c.pragma_update(None, "journal_mode", "WAL").unwrap();
        c.pragma_update(None, "synchronous", "NORMAL").unwrap();
        c.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        c
    }

    /// Rows, and a digest of their content.
    fn digest(c: &Connection) -> (i64, i64) {
        c.query_row(
            "SELECT count(*), coalesce(sum(id * length(v) + unicode(hex(v))), 0) FROM t",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    }

    fn integrity(c: &Connection) -> String {
        c.query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn a_transaction_reaches_the_log_in_one_write_before_another_connection_reads_it() {
        let dir = TempStore::new("wal-one-write");
        let writer = open(&dir.path());
        writer
            .execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
            .unwrap();
        let reader = open(&dir.path());
        assert_eq!(digest(&reader).0, 0);
        for round in 1..=20 {
            let (writes, passed) = counts(&writer).unwrap();
            // ≈ 25 pages of rows: about 50 writes from SQLite.
            fill(&writer, 100, 1_000);
            let (w, p) = counts(&writer).unwrap();
            assert!(w - writes >= 40, "round {round}: {} writes", w - writes);
            assert_eq!(p - passed, 1, "round {round}: one write to the file");
            // Committed, so in the file: another connection reads it all.
            assert_eq!(digest(&reader), digest(&writer), "round {round}");
            assert_eq!(digest(&reader).0, 100 * round);
        }
        // And a connection of its own reading the file afresh.
        drop(writer);
        let again = open(&dir.path());
        assert_eq!(digest(&again).0, 2_000);
        assert_eq!(integrity(&again), "ok");
    }

    #[test]
    fn large_spilled_and_rolled_back_transactions_leave_the_log_consistent() {
        let dir = TempStore::new("wal-large");
        let writer = open(&dir.path());
        // A small page cache: pages spill to the log mid-transaction and
        // are read back, and rewritten in place when changed again.
        writer.pragma_update(None, "cache_size", 16).unwrap();
        writer
            .execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
            .unwrap();
        let reader = open(&dir.path());
        // Past the buffer's size several times over.
        fill(&writer, 3_000, 2_000);
        const { assert!(3_000 * 2_000 > 4 * MAX) };
        assert_eq!(digest(&reader), digest(&writer));
        // Changed twice in one transaction, and a transaction rolled back.
        writer
            .execute_batch(
                "BEGIN;
                 UPDATE t SET v = zeroblob(500) WHERE id % 3 = 0;
                 UPDATE t SET v = randomblob(700) WHERE id % 6 = 0;
                 COMMIT;
                 BEGIN;
                 DELETE FROM t WHERE id % 2 = 0;
                 INSERT INTO t(v) SELECT randomblob(3000) FROM t;
                 ROLLBACK;",
            )
            .unwrap();
        fill(&writer, 500, 100);
        let expected = digest(&writer);
        assert_eq!(expected.0, 3_500);
        assert_eq!(digest(&reader), expected);
        assert_eq!(integrity(&reader), "ok");
        // Copied into the database and the log started over.
        writer
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        fill(&writer, 10, 100);
        drop((writer, reader));
        let again = open(&dir.path());
        assert_eq!(digest(&again).0, 3_510);
        assert_eq!(integrity(&again), "ok");
    }

    /// The child's part of the next test: commits, then dies at once or
    /// in the middle of a transaction large enough to spill frames to the
    /// log.
    fn die(path: &str, mid_transaction: bool) -> ! {
        let c = open(path);
        c.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
            .unwrap();
        fill(&c, 200, 1_000);
        if mid_transaction {
            c.pragma_update(None, "cache_size", 8).unwrap();
            c.execute_batch("BEGIN").unwrap();
            fill(&c, 300, 1_000);
        }
        // No unwinding, no destructors: as if the process were killed.
        // SAFETY: ends the process.
        unsafe { libc::_exit(0) }
    }

    #[test]
    fn a_process_that_dies_keeps_what_it_committed() {
        const CHILD: &str = "LEADGATE_WAL_WRITES_CHILD";
        if let Ok(what) = std::env::var(CHILD) {
            let (mode, path) = what.split_once(':').unwrap();
            die(path, mode == "mid");
        }
        for mode in ["commit", "mid"] {
            let dir = TempStore::new(&format!("wal-died-{mode}"));
            let status = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "wal_writes::tests::a_process_that_dies_keeps_what_it_committed",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD, format!("{mode}:{}", dir.path()))
                .status()
                .unwrap();
            assert!(status.success(), "{mode}: {status}");
            let c = open(&dir.path());
            // The committed rows, all of them; nothing of the unfinished
            // transaction.
            assert_eq!(digest(&c).0, 200, "{mode}");
            assert_eq!(integrity(&c), "ok", "{mode}");
            fill(&c, 10, 10);
            assert_eq!(digest(&c).0, 210, "{mode}");
        }
    }
}
