//! Helpers for the store's own tests.

use crate::Store;

/// A store file of its own, removed at the end of the test.
pub(crate) struct TempStore(std::path::PathBuf);

impl TempStore {
    pub(crate) fn new(name: &str) -> TempStore {
        let dir =
            std::env::temp_dir().join(format!("leadgate-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempStore(dir)
    }

    /// The store file's path.
    pub(crate) fn path(&self) -> String {
        self.0.join("s.db").display().to_string()
    }

    pub(crate) fn open(&self) -> Store {
        Store::open(&self.path()).unwrap()
    }
}

impl Drop for TempStore {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
