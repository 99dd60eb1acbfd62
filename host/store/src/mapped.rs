//! A VFS shim that keeps a connection's memory map of the database file
//! for as long as the connection is open, growing it in place (Linux only).
//!
//! SQLite unmaps a connection's whole memory-mapped view of the database at
//! the start of every read transaction that finds the database changed by
//! another connection (`pagerBeginReadTransaction` calls
//! `xUnfetch(0, NULL)`), because POSIX does not promise that a mapping
//! stays valid when the file changes; and it maps a grown file again only
//! after such an unmap. The service's pipeline thread reads while the
//! recording thread commits many times a second, so it tore down and
//! faulted back in the same pages every batch, and on a growing file every
//! remap cost more.
//!
//! On Linux a shared mapping of a file stays coherent with every write to
//! the file (checkpoints write the database with `pwrite`; both go through
//! the same page cache), and survives the file growing. The one hazard is
//! a page past the end of a file that shrank, which would raise `SIGBUS`.
//! So this shim, registered as the VFS [`NAME`], wraps the default VFS and
//! maps the file itself:
//!
//! - it reserves address space well beyond the file (inaccessible, no
//!   memory behind it) and maps the file at its start, so a grown file is
//!   mapped further in place — pages already mapped stay mapped, and
//!   pointers SQLite holds stay valid — once it has grown by
//!   [`EXTEND_STEP`] (pages appended meanwhile are read as usual);
//! - on SQLite's "unmap everything" it keeps the map, and only stops
//!   handing out pages past the file's end if the file shrank;
//! - reads (`xRead`) of mapped pages are copied from the map, as SQLite's
//!   own code does with its map, instead of a `pread`.
//!
//! Everything else is the default VFS's own code, which never maps the
//! file itself here (the shim answers `SQLITE_FCNTL_MMAP_SIZE`): the
//! shim's file is the default VFS's file with a few fields after it, and
//! its method table is the default's with six entries replaced.
//!
//! The shim also takes over each connection's write-ahead log file, to
//! write a transaction's frames with one system call instead of two per
//! frame ([`crate::wal_writes`]).

// Elsewhere `vfs` returns `None` and the rest is unused.
#![cfg_attr(not(target_os = "linux"), allow(dead_code))]

use rusqlite::ffi;
use std::ffi::{CStr, c_int, c_void};
use std::sync::{Mutex, OnceLock};

use crate::wal_writes::WalWrites;

/// The shim's VFS name, for `sqlite3_open_v2`.
pub(crate) const NAME: &CStr = c"leadgate-mapped";

/// Growth of the file past the map that is mapped (one `mmap` call);
/// until then the pages appended are read with `pread`.
const EXTEND_STEP: usize = 1 << 20;

/// The least address space reserved for a file's map; more when the file
/// is large (twice its size). Reserved space is not memory: it is
/// inaccessible, and only the file's pages mapped into it are read.
const RESERVE_MIN: usize = if cfg!(test) { 4 << 20 } else { 16 << 30 };

/// SQLite's own margin: a page is handed out only when 256 more bytes
/// after it are mapped too (a corrupt record may read a little past it).
const EOF_MARGIN: usize = 256;

/// What the shim keeps after the default VFS's file.
struct State {
    /// The default VFS's methods for this file.
    inner: *const ffi::sqlite3_io_methods,
    /// The shim's own read-only descriptor of the file, for mapping and
    /// its size; -1 when it could not be opened (then nothing is mapped).
    fd: c_int,
    /// The reserved address space, `reserved` bytes; null when none.
    base: *mut u8,
    reserved: usize,
    /// Bytes of the file mapped from `base` and handed out.
    len: usize,
    /// The map's limit (`PRAGMA mmap_size`); 0 maps nothing.
    limit: i64,
    /// Pages handed out and not returned yet.
    out: usize,
    /// The file's size when it was last asked (`fstat`). A page past the
    /// map but within this size is in the file — it has grown by less
    /// than [`EXTEND_STEP`] — and is read as usual without asking again:
    /// the newest pages are the hottest, and every fetch of one asked.
    seen: usize,
    /// Maps grown in place, reservations made, shrinks seen, and sizes
    /// asked.
    extended: u64,
    reservations: u64,
    shrunk: u64,
    sizes: u64,
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
    // A database file's state or a log's, after the default VFS's file.
    let offset = usize::try_from(vfs.szOsFile)
        .ok()?
        .next_multiple_of(std::mem::align_of::<State>().max(std::mem::align_of::<WalWrites>()));
    let extra = std::mem::size_of::<State>().max(std::mem::size_of::<WalWrites>());
    vfs.szOsFile = c_int::try_from(offset + extra).ok()?;
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

/// A kind of file's method tables, made from the default VFS's table by
/// replacing some of its entries: one per distinct default table (on
/// Linux there is one), kept for the life of the process.
pub(crate) struct Tables {
    made: Mutex<Vec<(usize, usize)>>,
    replace: fn(&mut ffi::sqlite3_io_methods),
}

impl Tables {
    pub(crate) const fn new(replace: fn(&mut ffi::sqlite3_io_methods)) -> Tables {
        Tables {
            made: Mutex::new(Vec::new()),
            replace,
        }
    }

    /// The table for files whose default methods are `inner`.
    pub(crate) fn made_from(
        &self,
        inner: *const ffi::sqlite3_io_methods,
    ) -> *const ffi::sqlite3_io_methods {
        let mut made = self.made.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, ours)) = made.iter().find(|(i, _)| *i == inner as usize) {
            return *ours as *const ffi::sqlite3_io_methods;
        }
        // SAFETY: `inner` is the method table the default VFS just
        // installed on a file; such tables are static.
        let mut ours = unsafe { *inner };
        (self.replace)(&mut ours);
        let ours: &'static ffi::sqlite3_io_methods = Box::leak(Box::new(ours));
        let ours = ours as *const ffi::sqlite3_io_methods;
        made.push((inner as usize, ours as usize));
        ours
    }

    /// Whether `file` has one of these tables.
    ///
    /// # Safety
    /// `file` must point at an open SQLite file.
    #[cfg(test)]
    pub(crate) unsafe fn have(&self, file: *mut ffi::sqlite3_file) -> bool {
        // SAFETY: an open file has its methods set.
        let methods = unsafe { (*file).pMethods } as usize;
        let made = self.made.lock().unwrap_or_else(|e| e.into_inner());
        made.iter().any(|(_, ours)| *ours == methods)
    }
}

/// A database file's tables: six entries replaced.
static TABLES: Tables = Tables::new(|t| {
    t.xClose = Some(close);
    t.xRead = Some(read);
    t.xTruncate = Some(truncate);
    t.xFetch = Some(fetch);
    t.xUnfetch = Some(unfetch);
    t.xFileControl = Some(file_control);
});

/// The file a connection's file control `op` points at (its main database
/// file, or its log), if it is open and one of `tables`'.
#[cfg(test)]
pub(crate) fn file_of(
    conn: &rusqlite::Connection,
    op: c_int,
    tables: &Tables,
) -> Option<*mut ffi::sqlite3_file> {
    let mut file: *mut ffi::sqlite3_file = std::ptr::null_mut();
    // SAFETY: `handle` is the open connection; the file control writes a
    // file pointer that lives as long as the file is open.
    unsafe {
        let rc = ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            op,
            (&mut file as *mut *mut ffi::sqlite3_file).cast(),
        );
        if rc != ffi::SQLITE_OK || file.is_null() || (*file).pMethods.is_null() {
            return None;
        }
        tables.have(file).then_some(file)
    }
}

/// Where the shim's state starts in a file of its VFS.
pub(crate) fn offset() -> usize {
    SHIM.get().and_then(Option::as_ref).map_or(0, |s| s.offset)
}

/// The shim's state of `file`.
///
/// # Safety
/// `file` must be a main database file opened by [`open`].
unsafe fn state<'a>(file: *mut ffi::sqlite3_file) -> &'a mut State {
    // SAFETY: files of this VFS are `szOsFile` bytes, with the state at
    // `offset`, written by `open` before the file's methods were set.
    unsafe { &mut *file.cast::<u8>().add(offset()).cast::<State>() }
}

/// The system's page size (mappings start and end on its multiples).
fn page_size() -> usize {
    static PAGE: OnceLock<usize> = OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: a plain query.
        let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(n).ok().filter(|n| *n > 0).unwrap_or(4096)
    })
}

impl State {
    /// The file's size now, from the shim's descriptor.
    fn file_size(&mut self) -> Option<usize> {
        // SAFETY: `stat` is written by `fstat` before it is read.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        self.sizes += 1;
        // SAFETY: `fd` is the shim's open descriptor.
        if self.fd < 0 || unsafe { libc::fstat(self.fd, &mut stat) } != 0 {
            self.seen = 0;
            return None;
        }
        self.seen = usize::try_from(stat.st_size).unwrap_or(0);
        Some(self.seen)
    }

    /// How much of a file of `size` bytes may be mapped: whole pages, up
    /// to the limit.
    fn mappable(&self, size: usize) -> usize {
        let limit = usize::try_from(self.limit.max(0)).unwrap_or(usize::MAX);
        (size.min(limit) / page_size()) * page_size()
    }

    /// Maps more of the file, if it has grown enough (or nothing is mapped
    /// yet), so that `need` bytes may be mapped. Returns whether the map
    /// covers `need` bytes now.
    fn grow(&mut self, need: usize) -> bool {
        match self.file_size() {
            Some(size) => self.grow_with(size, need),
            None => need <= self.len,
        }
    }

    /// [`State::grow`] for a file known to be `size` bytes now.
    fn grow_with(&mut self, size: usize, need: usize) -> bool {
        let target = self.mappable(size);
        // Nothing new to map, or too little yet (a first map takes any).
        if target <= self.len || (self.len > 0 && target - self.len < EXTEND_STEP) {
            return need <= self.len;
        }
        if self.base.is_null() || target > self.reserved {
            // A new reservation moves the map: only with no page out.
            if self.out > 0 || !self.reserve(target) {
                return need <= self.len;
            }
        }
        // SAFETY: `[base + len, base + target)` lies in the reservation,
        // and nothing in it is handed out (only `[base, base + len)` is);
        // `len` is a multiple of the page size, as `mmap` needs.
        let mapped = unsafe {
            libc::mmap(
                self.base.add(self.len).cast(),
                target - self.len,
                libc::PROT_READ,
                libc::MAP_SHARED | libc::MAP_FIXED,
                self.fd,
                self.len as libc::off_t,
            )
        };
        if mapped == libc::MAP_FAILED {
            return need <= self.len;
        }
        self.len = target;
        self.extended += 1;
        need <= self.len
    }

    /// Replaces the reservation with one for a file of `size` bytes.
    fn reserve(&mut self, size: usize) -> bool {
        self.release();
        let want = size
            .saturating_mul(2)
            .max(RESERVE_MIN)
            .next_multiple_of(page_size());
        for bytes in [want, size.next_multiple_of(page_size())] {
            // SAFETY: a fresh, inaccessible anonymous mapping.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    bytes,
                    libc::PROT_NONE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                    -1,
                    0,
                )
            };
            if p != libc::MAP_FAILED {
                self.base = p.cast();
                self.reserved = bytes;
                self.reservations += 1;
                return true;
            }
        }
        false
    }

    /// Gives the reservation back (nothing may be handed out).
    fn release(&mut self) {
        if !self.base.is_null() {
            // SAFETY: `base` is the reservation of `reserved` bytes, and no
            // page of it is handed out.
            unsafe { libc::munmap(self.base.cast(), self.reserved) };
        }
        self.base = std::ptr::null_mut();
        self.reserved = 0;
        self.len = 0;
    }

    /// The file is `size` bytes now: pages past it are no longer handed
    /// out or read from the map (they stay mapped, untouched, until the
    /// file grows over them and they are mapped again).
    fn shrink_to(&mut self, size: usize) {
        let keep = (size / page_size()) * page_size();
        if keep < self.len {
            self.len = keep;
            self.shrunk += 1;
        }
        self.seen = self.seen.min(size);
    }
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
    if rc == ffi::SQLITE_OK && flags & ffi::SQLITE_OPEN_WAL != 0 {
        // SAFETY: a file of this VFS, just opened, with room for the
        // log's state at `offset` (see `register`).
        unsafe { crate::wal_writes::install(file, shim.offset) };
        return rc;
    }
    if rc != ffi::SQLITE_OK || flags & ffi::SQLITE_OPEN_MAIN_DB == 0 || name.is_null() {
        return rc;
    }
    // SAFETY: the default VFS set the methods of the file it opened.
    let inner = unsafe { (*file).pMethods };
    // SAFETY: as above; memory-mapping needs method table version 3.
    if inner.is_null() || unsafe { (*inner).iVersion } < 3 {
        return rc;
    }
    // SAFETY: `name` is the path SQLite just opened, NUL-terminated.
    let fd = unsafe { libc::open(name, libc::O_RDONLY | libc::O_CLOEXEC) };
    // SAFETY: the state's space follows the default VFS's file.
    unsafe {
        file.cast::<u8>()
            .add(shim.offset)
            .cast::<State>()
            .write(State {
                inner,
                fd,
                base: std::ptr::null_mut(),
                reserved: 0,
                len: 0,
                limit: 0,
                out: 0,
                seen: 0,
                extended: 0,
                reservations: 0,
                shrunk: 0,
                sizes: 0,
            });
        (*file).pMethods = TABLES.made_from(inner);
    }
    rc
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: `file` was opened by `open` (only its files get this table).
    let st = unsafe { state(file) };
    let inner = st.inner;
    st.release();
    if st.fd >= 0 {
        // SAFETY: the shim's own descriptor, closed once.
        unsafe { libc::close(st.fd) };
        st.fd = -1;
    }
    // SAFETY: the default VFS's own method on its own file.
    match unsafe { (*inner).xClose } {
        Some(f) => unsafe { f(file) },
        None => ffi::SQLITE_OK,
    }
}

unsafe extern "C" fn read(
    file: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: `file` was opened by `open`.
    let st = unsafe { state(file) };
    if let (Ok(at), Ok(n)) = (usize::try_from(offset), usize::try_from(amount))
        && at.checked_add(n).is_some_and(|end| end <= st.len)
    {
        // SAFETY: `[at, at + n)` is mapped file content; `buf` holds `n`
        // bytes (SQLite's contract for xRead).
        unsafe { std::ptr::copy_nonoverlapping(st.base.add(at), buf.cast::<u8>(), n) };
        return ffi::SQLITE_OK;
    }
    // SAFETY: the default VFS's own method on its own file.
    match unsafe { (*st.inner).xRead } {
        Some(f) => unsafe { f(file, buf, amount, offset) },
        None => ffi::SQLITE_IOERR_READ,
    }
}

unsafe extern "C" fn truncate(file: *mut ffi::sqlite3_file, size: ffi::sqlite3_int64) -> c_int {
    // SAFETY: `file` was opened by `open`.
    let st = unsafe { state(file) };
    // SAFETY: the default VFS's own method on its own file.
    let rc = match unsafe { (*st.inner).xTruncate } {
        Some(f) => unsafe { f(file, size) },
        None => ffi::SQLITE_IOERR_TRUNCATE,
    };
    st.shrink_to(usize::try_from(size).unwrap_or(0));
    rc
}

unsafe extern "C" fn fetch(
    file: *mut ffi::sqlite3_file,
    offset: ffi::sqlite3_int64,
    amount: c_int,
    out: *mut *mut c_void,
) -> c_int {
    // SAFETY: `file` was opened by `open`; SQLite passes a valid out
    // pointer.
    let st = unsafe { state(file) };
    unsafe { *out = std::ptr::null_mut() };
    if st.limit <= 0 {
        return ffi::SQLITE_OK;
    }
    let (Ok(at), Ok(n)) = (usize::try_from(offset), usize::try_from(amount)) else {
        return ffi::SQLITE_OK;
    };
    let need = at.saturating_add(n).saturating_add(EOF_MARGIN);
    // Past the map but known to be in the file: too little growth to map
    // yet, so the page is read as usual (SQLite's page cache, else `xRead`).
    if need > st.len && at.saturating_add(n) <= st.seen {
        return ffi::SQLITE_OK;
    }
    if need <= st.len || st.grow(need) {
        // SAFETY: `at` lies in the mapped part of the reservation.
        unsafe { *out = st.base.add(at).cast() };
        st.out += 1;
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn unfetch(
    file: *mut ffi::sqlite3_file,
    _offset: ffi::sqlite3_int64,
    page: *mut c_void,
) -> c_int {
    // SAFETY: `file` was opened by `open`.
    let st = unsafe { state(file) };
    if !page.is_null() {
        st.out = st.out.saturating_sub(1);
        return ffi::SQLITE_OK;
    }
    // SQLite would drop the whole map: another connection changed the
    // file. Keep it, unless the file is shorter than what is mapped; and
    // with no page out, this is when a file grown past the reservation
    // can move to a larger one.
    match st.file_size() {
        Some(size) => {
            st.shrink_to(size);
            if st.len > 0 && st.out == 0 {
                st.grow_with(size, 0);
            }
        }
        None => st.shrink_to(0),
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    // SAFETY: `file` was opened by `open`.
    let st = unsafe { state(file) };
    if op == ffi::SQLITE_FCNTL_MMAP_SIZE && !arg.is_null() {
        // The map is the shim's: the default VFS never maps this file.
        // SAFETY: the argument is a pointer to an `sqlite3_int64`: the new
        // limit (negative: unchanged) in, the old one out.
        let arg = arg.cast::<i64>();
        let new = unsafe { *arg };
        unsafe { *arg = st.limit };
        if new >= 0 {
            st.limit = new;
            let allowed = st.mappable(st.len);
            st.shrink_to(allowed);
        }
        return ffi::SQLITE_OK;
    }
    // SAFETY: the default VFS's own method on its own file.
    match unsafe { (*st.inner).xFileControl } {
        Some(f) => unsafe { f(file, op, arg) },
        None => ffi::SQLITE_NOTFOUND,
    }
}

/// What a connection's map did: grown in place, reservations made, and
/// shrinks seen.
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts {
    pub extended: u64,
    pub reservations: u64,
    pub shrunk: u64,
    /// Times the file's size was asked.
    pub sizes: u64,
    /// Bytes mapped now.
    pub len: usize,
}

#[cfg(test)]
pub(crate) fn counts(conn: &rusqlite::Connection) -> Option<Counts> {
    let file = file_of(conn, ffi::SQLITE_FCNTL_FILE_POINTER, &TABLES)?;
    // SAFETY: the connection's main database file, opened by `open`.
    let st = unsafe { state(file) };
    Some(Counts {
        extended: st.extended,
        reservations: st.reservations,
        shrunk: st.shrunk,
        sizes: st.sizes,
        len: st.len,
    })
}

#[cfg(test)]
#[cfg(target_os = "linux")]
mod tests {
    use super::*;
    use crate::test_support::{TempStore, fill};
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
        let first = counts(&reader).unwrap();
        assert!(first.len > 0 && first.reservations == 1, "{first:?}");
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
        // Grown by less than a step: the same map, the new pages read.
        let c = counts(&reader).unwrap();
        assert_eq!(
            (c.extended, c.reservations, c.shrunk, c.len),
            (first.extended, first.reservations, first.shrunk, first.len)
        );
    }

    #[test]
    fn pages_past_the_map_are_read_without_asking_the_size_each_time() {
        let (_dir, writer, reader) = setup("mapped-seen");
        assert_eq!(sum(&reader), (2_000, 2_000_000));
        // Grown by less than a step, and out of the log: the new pages
        // come from the file, past the reader's map.
        fill(&writer, 300, 1_000);
        writer
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        assert_eq!(sum(&reader), (2_300, 2_300_000));
        let before = counts(&reader).unwrap();
        for _ in 0..20 {
            assert_eq!(sum(&reader), (2_300, 2_300_000));
        }
        let after = counts(&reader).unwrap();
        // Nothing changed meanwhile: no need to ask again (it was asked
        // once per page past the map, on every read, before).
        assert_eq!(after.sizes, before.sizes, "{before:?} → {after:?}");
        assert_eq!(after.len, before.len);
        // Grown again, past what was seen: asked, and read correctly.
        fill(&writer, 300, 1_000);
        writer
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        assert_eq!(sum(&reader), (2_600, 2_600_000));
        assert!(counts(&reader).unwrap().sizes > after.sizes);
    }

    #[test]
    fn a_file_that_shrank_is_read_correctly() {
        let (dir, writer, reader) = setup("mapped-shrank");
        assert_eq!(sum(&reader), (2_000, 2_000_000));
        writer.execute("DELETE FROM t WHERE id > 10", []).unwrap();
        writer.execute_batch("VACUUM").unwrap();
        writer
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        let size = std::fs::metadata(dir.path()).unwrap().len();
        assert!(size < 100_000, "the file shrank to {size} bytes");
        // Reading the pages past the new end through the map would kill
        // the process with SIGBUS.
        assert_eq!(sum(&reader), (10, 10_000));
        let c = counts(&reader).unwrap();
        assert_eq!(c.shrunk, 1, "{c:?}");
        assert!(c.len as u64 <= size, "{c:?}");
        // And it grows again from there.
        fill(&writer, 2_000, 1_000);
        writer
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        assert_eq!(sum(&reader), (2_010, 2_010_000));
        assert!(counts(&reader).unwrap().len > c.len);
    }

    #[test]
    fn a_grown_file_is_mapped_further_in_place() {
        let (dir, writer, reader) = setup("mapped-grew");
        assert_eq!(sum(&reader), (2_000, 2_000_000));
        let first = counts(&reader).unwrap();
        let reserved = (first.len * 2).max(RESERVE_MIN);
        // More than a step, less than the reservation.
        fill(&writer, 1_500, 1_000);
        writer
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        let size = std::fs::metadata(dir.path()).unwrap().len() as usize;
        assert!(
            size >= first.len + EXTEND_STEP && size <= reserved,
            "{size} bytes"
        );
        assert_eq!(sum(&reader), (3_500, 3_500_000));
        let c = counts(&reader).unwrap();
        assert_eq!((c.extended, c.reservations), (2, 1), "{c:?}");
        assert_eq!(c.len, size / page_size() * page_size());
        // Past the reservation the map moves to a larger one.
        fill(&writer, 8_000, 1_000);
        writer
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        assert_eq!(sum(&reader), (11_500, 11_500_000));
        let c = counts(&reader).unwrap();
        assert_eq!((c.extended, c.reservations), (3, 2), "{c:?}");
    }

    #[test]
    fn without_a_limit_nothing_is_mapped() {
        let (_dir, writer, reader) = setup("mapped-off");
        reader.pragma_update(None, "mmap_size", 0).unwrap();
        assert_eq!(sum(&reader), (2_000, 2_000_000));
        fill(&writer, 10, 1_000);
        assert_eq!(sum(&reader), (2_010, 2_010_000));
        assert_eq!(counts(&reader).unwrap().len, 0);
        let limit: i64 = reader
            .query_row("PRAGMA mmap_size", [], |r| r.get(0))
            .unwrap();
        assert_eq!(limit, 0);
    }
}
