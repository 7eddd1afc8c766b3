//! [`KubeletVolume`]: files laid out and updated the way the kubelet does it for a ConfigMap or
//! a Secret mounted as a volume, for the tests of what rodent does when they change.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

/// A mounted ConfigMap or Secret, as the kubelet lays it out: the files are in a timestamped
/// directory, `..data` links to it, and each key is a link through `..data`. An update writes a
/// new directory, points a new link at it and renames that over `..data` (one atomic swap for
/// every key), then removes the old directory.
pub struct KubeletVolume {
    dir: PathBuf,
    generation: u32,
}

impl KubeletVolume {
    /// Lays out `files` (name, contents) in `dir`.
    pub fn new(dir: &Path, files: &[(&str, impl AsRef<[u8]>)]) -> Self {
        let mut volume = Self {
            dir: dir.to_path_buf(),
            generation: 0,
        };
        volume.update(files);
        for (name, _) in files {
            symlink(format!("..data/{name}"), dir.join(name)).expect("the key's link is made");
        }
        volume
    }

    /// Where a key is, as a pod sees it.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Swaps in new contents for every key at once.
    pub fn update(&mut self, files: &[(&str, impl AsRef<[u8]>)]) {
        let old = self.timestamped();
        self.generation += 1;
        let new = self.timestamped();
        std::fs::create_dir(self.dir.join(&new)).expect("the new directory is made");
        for (name, contents) in files {
            std::fs::write(self.dir.join(&new).join(name), contents.as_ref())
                .expect("the key is written");
        }
        symlink(&new, self.dir.join("..data_tmp")).expect("the new link is made");
        std::fs::rename(self.dir.join("..data_tmp"), self.dir.join("..data"))
            .expect("the link is swapped");
        if self.generation > 1 {
            std::fs::remove_dir_all(self.dir.join(old)).expect("the old directory is removed");
        }
    }

    fn timestamped(&self) -> String {
        format!(
            "..2026_12_07_10_00_{:02}.{}",
            self.generation,
            100 + self.generation
        )
    }
}
