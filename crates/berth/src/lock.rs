//! One agent (or `berth apply`) per instance and machine: an exclusive lock on
//! `/run/berth/<instance>.lock` (falling back to `$TMPDIR/berth/` where `/run` is not
//! writable), held while the agent or apply runs and released by the kernel when the process
//! ends, however it ends.

use std::fs::File;
use std::path::PathBuf;

use anyhow::Context;

/// The held lock; dropping it releases it.
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
    /// The lock file.
    pub path: PathBuf,
}

fn lock_dir() -> PathBuf {
    let run = PathBuf::from("/run/berth");
    if std::fs::create_dir_all(&run).is_ok() {
        return run;
    }
    std::env::temp_dir().join("berth")
}

/// Takes the instance's lock, or fails with a message naming the other agent's lock file.
///
/// # Errors
/// When another agent of `instance` holds the lock, or the lock file cannot be created.
pub fn acquire(instance: &str) -> anyhow::Result<InstanceLock> {
    let dir = lock_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let path = dir.join(format!("{instance}.lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("open the instance lock {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(InstanceLock { _file: file, path }),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another berth agent or apply of instance {instance:?} is already running on this machine (it holds {}); two of them would undo each other's work, so this one refuses to start: change what that agent reads (its manifest directory), stop it, or give this one its own --instance",
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("lock {}", path.display()))
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_second_lock_of_the_same_instance_is_refused() {
        let name = format!("lock-test-{}", std::process::id());
        let first = super::acquire(&name).expect("first");
        let second = super::acquire(&name).expect_err("second refused");
        assert!(second.to_string().contains("already running"), "{second}");
        assert!(super::acquire(&format!("{name}-other")).is_ok());
        drop(first);
        assert!(super::acquire(&name).is_ok(), "released on drop");
    }
}
