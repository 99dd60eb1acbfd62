//! A VFS shim that keeps a connection's memory map of the database file
//! across transactions (Linux only).
//!
//! SQLite unmaps a connection's whole memory-mapped view of the database at
//! the start of every read transaction that finds the database changed by
//! another connection (`pagerBeginReadTransaction` calls
//! `xUnfetch(0, NULL)`), because POSIX does not promise that a mapping
//! stays valid when the file changes. The service's pipeline thread reads
//! while the recording thread commits many times a second, so it tore
//! down and faulted back in the same pages every batch: `munmap` took
//! 2.3 ms a call, and unmapping and page faults were a fifth of the
//! thread's time.
//!
//! On Linux a shared mapping of a file stays coherent with every write to
//! the file (checkpoints write the database with `pwrite`; both go through
//! the same page cache), and survives the file growing. The one hazard is
//! a page past the end of a file that shrank, which would raise `SIGBUS`.
//! So this shim, registered as the VFS [`NAME`], wraps the default VFS and
//! lets that "unmap everything" through only when the file is now shorter
//! than the mapping may be, or has grown by more than [`remap_growth`]
//! since it was mapped (so the new part gets mapped too; until then its
//! pages are read as usual). Everything else is the default VFS's own
//! code: the shim's file is the default VFS's file with a few fields after
//! it, and its method table is the default's with three entries replaced.
//!
//! The bound kept is an upper bound on the mapping's size: the file's size
//! whenever SQLite may have mapped it (a first read after an unmap, a size
//! hint, a new mmap limit). Overestimating it only unmaps more often.

// Elsewhere `vfs` returns `None` and the rest is unused.
#![cfg_attr(not(target_os = "linux"), allow(dead_code))]

use rusqlite::ffi;
use std::ffi::{CStr, c_int, c_void};
use std::sync::{Mutex, OnceLock};

/// The shim's VFS name, for `sqlite3_open_v2`.
pub(crate) const NAME: &CStr = c"leadgate-mapped";

/// The least growth of the file past the mapping that makes the shim let
/// an unmap through, so the next read maps the whole file again.
const REMAP_GROWTH: i64 = 32 << 20;

/// The growth past a mapping of `bound` bytes that makes the shim let an
/// unmap through: a quarter of the mapping, at least [`REMAP_GROWTH`].
/// Each remap costs an `munmap` of every page the connection touched and
/// the page faults to map them again, which grow with the file, while
/// the pages appended meanwhile are only read with `pread` until then: at
/// a million leads (a 4 GiB file, growing 20 MB/s under load) remapping
/// every 32 MiB cost the service's preparing thread 5 % more than never
/// remapping at all.
fn remap_growth(bound: i64) -> i64 {
    REMAP_GROWTH.max(bound / 4)
}

/// What the shim keeps after the default VFS's file.
struct State {
    /// The default VFS's methods for this file.
    inner: *const ffi::sqlite3_io_methods,
    /// Whether SQLite may hold a mapping of at most `bound` bytes.
    mapped: bool,
    bound: i64,
    /// The mmap limit last set (`PRAGMA mmap_size`).
    limit: i64,
    /// Unmaps skipped and let through.
    kept: u64,
    unmapped: u64,
}

struct Shim {
    inner: *mut ffi::sqlite3_vfs,
    /// Where [`State`] starts in a file of this VFS.
    offset: usize,
}

// SAFETY: both fields are set once at registration and only read after;
// the default VFS they point at lives for the whole process.
unsafe impl Send for Shim {}
unsafe impl Sync for Shim {}

static SHIM: OnceLock<Option<Shim>> = OnceLock::new();

/// The shim's name once it is registered, or `None` where it is not
/// available (then the default VFS is used).
pub(crate) fn vfs() -> Option<&'static CStr> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    SHIM.get_or_init(|| {
        // SAFETY: registration runs once; see `register`.
        unsafe { register() }
    })
    .as_ref()
    .map(|_| NAME)
}

/// Registers the shim beside the default VFS (which stays the default).
///
/// # Safety
/// Calls into SQLite's C API; the VFS object is leaked, as SQLite keeps a
/// pointer to it for the life of the process.
unsafe fn register() -> Option<Shim> {
    // SAFETY: `sqlite3_vfs_find` initializes the library if needed and
    // returns the default VFS, or null.
    let inner = unsafe { ffi::sqlite3_vfs_find(std::ptr::null()) };
    if inner.is_null() {
        return None;
    }
    // SAFETY: `inner` points at a registered VFS, valid for the process.
    let mut vfs = unsafe { *inner };
    let offset = usize::try_from(vfs.szOsFile)
        .ok()?
        .next_multiple_of(std::mem::align_of::<State>());
    vfs.szOsFile = c_int::try_from(offset + std::mem::size_of::<State>()).ok()?;
    vfs.zName = NAME.as_ptr();
    vfs.pNext = std::ptr::null_mut();
    vfs.xOpen = Some(open);
    // Every other entry (and `pAppData`) is the default VFS's: none of its
    // functions but `xOpen` look at the VFS object beyond `pAppData`.
    let vfs = Box::into_raw(Box::new(vfs));
    // SAFETY: `vfs` is a complete VFS object that is never freed.
    if unsafe { ffi::sqlite3_vfs_register(vfs, 0) } != ffi::SQLITE_OK {
        // SAFETY: not registered, so nothing else holds it.
        drop(unsafe { Box::from_raw(vfs) });
        return None;
    }
    Some(Shim { inner, offset })
}

/// The shim's method tables: (default table, the shim's), as addresses.
static TABLES: Mutex<Vec<(usize, usize)>> = Mutex::new(Vec::new());

/// The shim's method table for files whose default methods are `inner`
/// (one table per distinct default table; on Linux there is one).
fn methods_for(inner: *const ffi::sqlite3_io_methods) -> *const ffi::sqlite3_io_methods {
    let mut tables = TABLES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, ours)) = tables.iter().find(|(i, _)| *i == inner as usize) {
        return *ours as *const ffi::sqlite3_io_methods;
    }
    // SAFETY: `inner` is the method table the default VFS just installed
    // on a file; such tables are static.
    let mut ours = unsafe { *inner };
    ours.xFetch = Some(fetch);
    ours.xUnfetch = Some(unfetch);
    ours.xFileControl = Some(file_control);
    let ours: &'static ffi::sqlite3_io_methods = Box::leak(Box::new(ours));
    let ours = ours as *const ffi::sqlite3_io_methods;
    tables.push((inner as usize, ours as usize));
    ours
}

/// The shim's state of `file`.
///
/// # Safety
/// `file` must be a main database file opened by [`open`].
unsafe fn state<'a>(file: *mut ffi::sqlite3_file) -> &'a mut State {
    let offset = SHIM.get().and_then(Option::as_ref).map_or(0, |s| s.offset);
    // SAFETY: files of this VFS are `szOsFile` bytes, with the state at
    // `offset`, written by `open` before the file's methods were set.
    unsafe { &mut *file.cast::<u8>().add(offset).cast::<State>() }
}

/// The file's size, from the default VFS.
///
/// # Safety
/// `file` must be open and `inner` its default methods.
unsafe fn size_of(
    file: *mut ffi::sqlite3_file,
    inner: *const ffi::sqlite3_io_methods,
) -> Option<i64> {
    let mut size = 0;
    // SAFETY: forwarded to the default VFS's own method for this file.
    let rc = unsafe { (*inner).xFileSize.map(|f| f(file, &mut size)) };
    (rc == Some(ffi::SQLITE_OK)).then_some(size)
}

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let Some(shim) = SHIM.get().and_then(Option::as_ref) else {
        return ffi::SQLITE_CANTOPEN;
    };
    // SAFETY: the default VFS opens the file in the first `szOsFile` bytes
    // of the (larger) space SQLite allocated for this VFS's files.
    let rc = unsafe {
        match (*shim.inner).xOpen {
            Some(f) => f(shim.inner, name, file, flags, out_flags),
            None => return ffi::SQLITE_CANTOPEN,
        }
    };
    if rc != ffi::SQLITE_OK || flags & ffi::SQLITE_OPEN_MAIN_DB == 0 {
        return rc;
    }
    // SAFETY: the default VFS set the methods of the file it opened.
    let inner = unsafe { (*file).pMethods };
    // SAFETY: as above; memory-mapping needs method table version 3.
    if inner.is_null() || unsafe { (*inner).iVersion } < 3 {
        return rc;
    }
    // SAFETY: the state's space follows the default VFS's file.
    unsafe {
        file.cast::<u8>()
            .add(shim.offset)
            .cast::<State>()
            .write(State {
                inner,
                mapped: false,
                bound: 0,
                limit: 0,
                kept: 0,
                unmapped: 0,
            });
        (*file).pMethods = methods_for(inner);
    }
    rc
}

unsafe extern "C" fn fetch(
    file: *mut ffi::sqlite3_file,
    offset: ffi::sqlite3_int64,
    amount: c_int,
    out: *mut *mut c_void,
) -> c_int {
    // SAFETY: `file` was opened by `open` (only its files get this table).
    let st = unsafe { state(file) };
    if st.mapped {
        // SAFETY: forwarded unchanged.
        return unsafe { forward_fetch(st.inner, file, offset, amount, out) };
    }
    // This read may map the file at its current size: bound it by the
    // size before and after (it only grows while a transaction is open).
    // SAFETY: forwarded to the default VFS.
    let before = unsafe { size_of(file, st.inner) };
    let rc = unsafe { forward_fetch(st.inner, file, offset, amount, out) };
    let after = unsafe { size_of(file, st.inner) };
    match (before, after) {
        (Some(b), Some(a)) => {
            st.bound = st.bound.max(b).max(a);
            st.mapped = true;
        }
        // Without a size the bound is unknown: let the next unmap through.
        _ => st.mapped = false,
    }
    rc
}

/// # Safety
/// `inner` must be `file`'s default methods.
unsafe fn forward_fetch(
    inner: *const ffi::sqlite3_io_methods,
    file: *mut ffi::sqlite3_file,
    offset: ffi::sqlite3_int64,
    amount: c_int,
    out: *mut *mut c_void,
) -> c_int {
    // SAFETY: the default VFS's own method on its own file.
    match unsafe { (*inner).xFetch } {
        Some(f) => unsafe { f(file, offset, amount, out) },
        None => {
            // SAFETY: SQLite passes a valid out pointer.
            unsafe { *out = std::ptr::null_mut() };
            ffi::SQLITE_OK
        }
    }
}

unsafe extern "C" fn unfetch(
    file: *mut ffi::sqlite3_file,
    offset: ffi::sqlite3_int64,
    page: *mut c_void,
) -> c_int {
    // SAFETY: `file` was opened by `open`.
    let st = unsafe { state(file) };
    if page.is_null() && st.mapped {
        // SAFETY: forwarded to the default VFS.
        let size = unsafe { size_of(file, st.inner) };
        let keep = size.is_some_and(|size| {
            size >= st.bound
                && !(size >= st.bound.saturating_add(remap_growth(st.bound)) && st.bound < st.limit)
        });
        if keep {
            st.kept += 1;
            return ffi::SQLITE_OK;
        }
    }
    // SAFETY: the default VFS's own method on its own file.
    let rc = match unsafe { (*st.inner).xUnfetch } {
        Some(f) => unsafe { f(file, offset, page) },
        None => ffi::SQLITE_OK,
    };
    if page.is_null() {
        st.mapped = false;
        st.bound = 0;
        st.unmapped += 1;
    }
    rc
}

unsafe extern "C" fn file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    // SAFETY: `file` was opened by `open`.
    let st = unsafe { state(file) };
    // Both may map the file, or map more of it.
    let maps = op == ffi::SQLITE_FCNTL_SIZE_HINT || op == ffi::SQLITE_FCNTL_MMAP_SIZE;
    let value = if maps && !arg.is_null() {
        // SAFETY: both take a pointer to an `sqlite3_int64`.
        Some(unsafe { *arg.cast::<i64>() })
    } else {
        None
    };
    if op == ffi::SQLITE_FCNTL_MMAP_SIZE
        && let Some(limit) = value.filter(|l| *l >= 0)
    {
        st.limit = limit;
    }
    // SAFETY: the default VFS's own method on its own file.
    let rc = match unsafe { (*st.inner).xFileControl } {
        Some(f) => unsafe { f(file, op, arg) },
        None => ffi::SQLITE_NOTFOUND,
    };
    if maps {
        // SAFETY: forwarded to the default VFS.
        match unsafe { size_of(file, st.inner) } {
            Some(size) => {
                let hint = if op == ffi::SQLITE_FCNTL_SIZE_HINT {
                    value.unwrap_or(0)
                } else {
                    0
                };
                st.bound = st.bound.max(size).max(hint);
            }
            None => st.mapped = false,
        }
    }
    rc
}

/// How often a connection's unmaps were skipped and let through.
#[cfg(test)]
pub(crate) fn counts(conn: &rusqlite::Connection) -> Option<(u64, u64)> {
    let mut file: *mut ffi::sqlite3_file = std::ptr::null_mut();
    // SAFETY: `handle` is the open connection; the file control writes the
    // main database's file pointer, which lives as long as the connection.
    unsafe {
        let rc = ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_FILE_POINTER,
            (&mut file as *mut *mut ffi::sqlite3_file).cast(),
        );
        if rc != ffi::SQLITE_OK || file.is_null() || (*file).pMethods.is_null() {
            return None;
        }
        let methods = (*file).pMethods as usize;
        let tables = TABLES.lock().unwrap_or_else(|e| e.into_inner());
        if !tables.iter().any(|(_, ours)| *ours == methods) {
            return None;
        }
        let st = state(file);
        Some((st.kept, st.unmapped))
    }
}

#[cfg(test)]
#[cfg(target_os = "linux")]
mod tests {
    use super::*;
    use crate::test_support::TempStore;
    use rusqlite::Connection;

    fn open(path: &str) -> Connection {
        let c = Connection::open_with_flags_and_vfs(path, Default::default(), NAME)
            .unwrap_or_else(|e| panic!("open {path}: {e}"));
        c.pragma_update(None, "journal_mode", "WAL").unwrap();
        c.pragma_update(None, "mmap_size", 1i64 << 30).unwrap();
        c
    }

    fn sum(c: &Connection) -> (i64, i64) {
        c.query_row(
            "SELECT count(*), coalesce(sum(length(v)), 0) FROM t",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    }

    fn fill(c: &Connection, rows: i64, bytes: i64) {
        c.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
             INSERT INTO t(v) SELECT randomblob(?2) FROM n",
            rusqlite::params![rows, bytes],
        )
        .unwrap();
    }

    fn setup(name: &str) -> (TempStore, Connection, Connection) {
        assert!(vfs().is_some(), "the shim registers on Linux");
        let dir = TempStore::new(name);
        let writer = open(&dir.path());
        writer
            .execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
            .unwrap();
        fill(&writer, 2_000, 1_000);
        writer
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        let reader = open(&dir.path());
        (dir, writer, reader)
    }

    #[test]
    fn a_reader_keeps_its_map_while_another_connection_commits() {
        let (_dir, writer, reader) = setup("mapped-kept");
        assert_eq!(sum(&reader), (2_000, 2_000_000));
        for round in 1..=5 {
            fill(&writer, 100, 1_000);
            // Copied into the database file, which the reader has mapped.
            writer
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                .unwrap();
            writer
                .execute("UPDATE t SET v = zeroblob(10) WHERE id = ?1", [round])
                .unwrap();
            let rows = 2_000 + 100 * round;
            assert_eq!(sum(&reader), (rows, (rows - round) * 1_000 + round * 10));
        }
        let (kept, unmapped) = counts(&reader).unwrap();
        assert!(kept >= 5, "kept {kept}, unmapped {unmapped}");
        assert_eq!(unmapped, 0, "the file only grew, by less than the slack");
    }

    #[test]
    fn a_file_that_shrank_is_unmapped() {
        let (dir, writer, reader) = setup("mapped-shrank");
        assert_eq!(sum(&reader), (2_000, 2_000_000));
        writer.execute("DELETE FROM t WHERE id > 10", []).unwrap();
        writer.execute_batch("VACUUM").unwrap();
        writer
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        let size = std::fs::metadata(dir.path()).unwrap().len();
        assert!(size < 100_000, "the file shrank to {size} bytes");
        // Reading the pages past the new end through the old map would
        // kill the process with SIGBUS.
        assert_eq!(sum(&reader), (10, 10_000));
        let (_, unmapped) = counts(&reader).unwrap();
        assert_eq!(unmapped, 1);
    }

    #[test]
    fn a_large_mapping_waits_for_a_quarter_of_its_size_to_be_remapped() {
        assert_eq!(remap_growth(0), REMAP_GROWTH);
        assert_eq!(remap_growth(REMAP_GROWTH * 4), REMAP_GROWTH);
        assert_eq!(remap_growth(4 << 30), 1 << 30);
    }

    #[test]
    fn a_file_that_grew_past_the_slack_is_mapped_again() {
        let (_dir, writer, reader) = setup("mapped-grew");
        assert_eq!(sum(&reader), (2_000, 2_000_000));
        fill(&writer, (REMAP_GROWTH / 1_000) + 1_000, 1_000);
        writer
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        let rows = 2_000 + REMAP_GROWTH / 1_000 + 1_000;
        assert_eq!(sum(&reader), (rows, rows * 1_000));
        assert_eq!(counts(&reader).unwrap().1, 1);
        // Mapped again at the new size: a small commit keeps the map.
        fill(&writer, 10, 1_000);
        assert_eq!(sum(&reader), (rows + 10, (rows + 10) * 1_000));
        assert_eq!(counts(&reader).unwrap().1, 1);
    }
}
