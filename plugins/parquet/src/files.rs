//! The file system side of the history: the root's lock and staging area, committing a file
//! (fsync, rename, directory fsync), listing hour partitions, retention (which partitions to
//! delete, and deleting one atomically) and the atomic directory exchange compaction uses.
//!
//! Every path rule comes from `tickflow_formats::layout`.

use std::fs::{self, File};
use std::io::{self, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use tickflow_formats::Dataset;
use tickflow_formats::layout::{self, HourPartition, LOCK_FILE, STAGING_DIR, is_data_file_name};

use crate::config::RetentionRule;

/// The paths under one root.
#[derive(Clone, Debug)]
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn new(root: PathBuf) -> Layout {
        Layout { root }
    }
    pub fn staging_dir(&self) -> PathBuf {
        self.root.join(STAGING_DIR)
    }
    pub fn dataset_dir(&self, dataset: Dataset) -> PathBuf {
        self.root.join(dataset.name())
    }
    pub fn partition_dir(&self, dataset: Dataset, hour: HourPartition) -> PathBuf {
        self.root.join(hour.relative_dir(dataset.name()))
    }
}

/// fsync a directory, so the names created or removed in it survive a crash.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

/// Takes the root's writer lock (an advisory `flock` on `<root>/_writer.lock`, released when the
/// file is closed, also by a crash). `Ok(None)`: another live writer holds it.
pub fn lock_root(root: &Path) -> io::Result<Option<File>> {
    fs::create_dir_all(root)?;
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(root.join(LOCK_FILE))?;
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: `file` is an open descriptor for the whole call; flock has no memory effects.
        let status = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if status != 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::WouldBlock {
                return Ok(None);
            }
            return Err(error);
        }
    }
    Ok(Some(file))
}

/// Empties the staging area (a previous run's unfinished files, compaction work and partitions
/// being deleted: none of them ever visible to readers) and recreates it.
pub fn reset_staging(layout: &Layout) -> io::Result<u64> {
    let staging = layout.staging_dir();
    let mut removed = 0;
    match fs::read_dir(&staging) {
        Ok(entries) => {
            for entry in entries {
                let entry = entry?;
                let path = entry.path();
                if entry.file_type()?.is_dir() {
                    fs::remove_dir_all(&path)?;
                } else {
                    fs::remove_file(&path)?;
                }
                removed += 1;
            }
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(&staging)?;
        }
        Err(error) => return Err(error),
    }
    sync_dir(&staging)?;
    sync_dir(&layout.root)?;
    Ok(removed)
}

/// Creates `dir` and its missing parents, fsyncing each parent whose entry was created.
pub fn create_dir_synced(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut cursor = Some(dir);
    while let Some(path) = cursor {
        if path.is_dir() {
            break;
        }
        missing.push(path.to_path_buf());
        cursor = path.parent();
    }
    fs::create_dir_all(dir)?;
    for path in missing.iter().rev() {
        if let Some(parent) = path.parent() {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

/// Makes a finished staging file visible: fsync the file, rename it to `final_dir/final_name`
/// (creating the directories), fsync the directory. If the staging file's name is gone (the
/// staging directory was removed under the writer), the content is copied from the still-open
/// descriptor into a fresh staging file first. Returns the file's size.
pub fn commit_file(
    file: &mut File,
    staging_path: &Path,
    final_dir: &Path,
    final_name: &str,
) -> io::Result<u64> {
    file.sync_all()?;
    let bytes = file.metadata()?.len();
    if !staging_path.exists() {
        if let Some(parent) = staging_path.parent() {
            fs::create_dir_all(parent)?;
        }
        let mut fresh = File::create(staging_path)?;
        file.seek(SeekFrom::Start(0))?;
        io::copy(file, &mut fresh)?;
        fresh.sync_all()?;
    }
    create_dir_synced(final_dir)?;
    fs::rename(staging_path, final_dir.join(final_name))?;
    sync_dir(final_dir)?;
    Ok(bytes)
}

/// One hour partition of one dataset on disk.
#[derive(Clone, Debug)]
pub struct PartitionOnDisk {
    pub hour: HourPartition,
    pub dir: PathBuf,
    /// Visible data files (name, bytes), by name.
    pub files: Vec<(String, u64)>,
}

impl PartitionOnDisk {
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|(_, bytes)| bytes).sum()
    }
}

/// Every hour partition of `dataset`, oldest first. Directories that are not partitions are
/// ignored; a dataset directory that does not exist has none.
pub fn list_partitions(layout: &Layout, dataset: Dataset) -> io::Result<Vec<PartitionOnDisk>> {
    let dataset_dir = layout.dataset_dir(dataset);
    let mut partitions = Vec::new();
    let dates = match fs::read_dir(&dataset_dir) {
        Ok(dates) => dates,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(partitions),
        Err(error) => return Err(error),
    };
    for date in dates {
        let date = date?;
        let date_name = date.file_name().to_string_lossy().into_owned();
        if HourPartition::parse_date_component(&date_name).is_err() || !date.file_type()?.is_dir() {
            continue;
        }
        for hour in fs::read_dir(date.path())? {
            let hour = hour?;
            let hour_name = hour.file_name().to_string_lossy().into_owned();
            let Ok(partition) = HourPartition::parse(&date_name, &hour_name) else {
                continue;
            };
            if !hour.file_type()?.is_dir() {
                continue;
            }
            let mut files = Vec::new();
            for file in fs::read_dir(hour.path())? {
                let file = file?;
                let name = file.file_name().to_string_lossy().into_owned();
                if is_data_file_name(&name) {
                    files.push((name, file.metadata()?.len()));
                }
            }
            files.sort();
            partitions.push(PartitionOnDisk {
                hour: partition,
                dir: hour.path(),
                files,
            });
        }
    }
    partitions.sort_by_key(|partition| partition.hour);
    Ok(partitions)
}

/// Which partitions (indices into `partitions`, oldest first) retention deletes at `now_ns`:
/// those whose hour ended more than `max_age_hours` ago, then the oldest ones while the dataset
/// holds more than `max_bytes`. Hours in `protected` (files still open for them) are kept.
pub fn retention_victims(
    partitions: &[PartitionOnDisk],
    rule: &RetentionRule,
    now_ns: i64,
    protected: &[HourPartition],
) -> Vec<usize> {
    let mut victims = Vec::new();
    let mut total: u64 = partitions.iter().map(PartitionOnDisk::bytes).sum();
    for (index, partition) in partitions.iter().enumerate() {
        if protected.contains(&partition.hour) {
            continue;
        }
        let too_old = rule.max_age_hours.is_some_and(|hours| {
            let age_ns = (hours as i64).saturating_mul(layout::HOUR_NS);
            partition.hour.end_ns().saturating_add(age_ns) <= now_ns
        });
        let too_big = rule.max_bytes.is_some_and(|max| total > max);
        if too_old || too_big {
            victims.push(index);
            total = total.saturating_sub(partition.bytes());
        } else {
            // Oldest first: this one is young enough and the total fits, so are the rest.
            break;
        }
    }
    victims
}

/// Deletes one partition so that readers see it whole or not at all: the hour directory is
/// renamed into the staging area (one atomic step), then removed there; an emptied date
/// directory is removed too.
pub fn remove_partition(
    layout: &Layout,
    partition: &PartitionOnDisk,
    sequence: u64,
) -> io::Result<()> {
    let trash = layout.staging_dir().join(format!("trash-{sequence}"));
    fs::create_dir_all(layout.staging_dir())?;
    fs::rename(&partition.dir, &trash)?;
    if let Some(date_dir) = partition.dir.parent() {
        sync_dir(date_dir)?;
        // Only succeeds when empty; another hour of the day keeps it.
        if fs::remove_dir(date_dir).is_ok() {
            if let Some(dataset_dir) = date_dir.parent() {
                sync_dir(dataset_dir)?;
            }
        }
    }
    fs::remove_dir_all(&trash)?;
    Ok(())
}

/// Atomically exchanges two directories (`renameat2(RENAME_EXCHANGE)`): at every instant each
/// path names one complete directory. `Unsupported` where the system or file system has no
/// such call.
pub fn exchange_dirs(a: &Path, b: &Path) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let a = CString::new(a.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))?;
        let b = CString::new(b.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))?;
        // SAFETY: both are NUL-terminated strings alive for the call.
        let status = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                a.as_ptr(),
                libc::AT_FDCWD,
                b.as_ptr(),
                libc::RENAME_EXCHANGE,
            )
        };
        if status == 0 {
            return Ok(());
        }
        let error = io::Error::last_os_error();
        if matches!(
            error.raw_os_error(),
            Some(libc::EINVAL) | Some(libc::ENOSYS)
        ) {
            return Err(io::Error::new(io::ErrorKind::Unsupported, error));
        }
        Err(error)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (a, b);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "atomic directory exchange needs Linux renameat2",
        ))
    }
}
