//! The gRPC API on a Unix domain socket (`unix_listen`), beside the TCP listener.
//!
//! - A socket file outlives a process that was killed: one nothing answers on is replaced.
//!   One a live server answers on (or that does not answer in time), a symbolic link and a
//!   path that is no socket stop the start-up and are left as they are.
//! - The socket is bound under a temporary name, given mode 0660 (owner and group; connecting
//!   needs write permission) and only then renamed into place, so it is never reachable with
//!   the looser mode the umask would give it.
//! - Its file is removed when the listener stops, unless another process has put its own
//!   socket there since (a successor started while this one drained).
//! - Checking the path and binding it are one step for every process that binds it: each
//!   holds an advisory lock on a `.lock` file beside the socket meanwhile (kept afterwards,
//!   since removing it would let two processes lock two files of one name). Of two servers
//!   started at once on one path, one binds and the other stops, instead of both binding and
//!   the second renaming its socket over the first's. Removing the file on the way out takes
//!   the same lock, so it never removes a successor's socket renamed in meanwhile.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio_stream::Stream;
use tokio_stream::wrappers::UnixListenerStream;

use super::single_write::SingleWrite;

/// Owner and group may connect; others may not.
const SOCKET_MODE: u32 = 0o660;
/// Added to the path while the socket is bound and its mode set.
const BINDING_SUFFIX: &str = ".new";
/// Added to the path for the file locked while the path is checked and bound.
const LOCK_SUFFIX: &str = ".lock";
/// How long a process answering on an existing socket has to accept a connection.
const LIVENESS_TIMEOUT: Duration = Duration::from_secs(1);

/// A bound socket.
#[derive(Debug)]
pub struct UnixSocket {
    listener: UnixListener,
    file: SocketFile,
}

/// The socket's file: removed when this is dropped, if it is still the one bound here.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    /// Device and inode of the bound socket.
    identity: (u64, u64),
}

impl UnixSocket {
    /// Binds `path`, replacing a stale socket file left by a process that is gone.
    pub async fn bind(path: &Path) -> io::Result<UnixSocket> {
        let _binding = lock_for_binding(path)?;
        // A stale socket there is replaced by the rename below.
        vacancy(path).await?;
        let binding = with_suffix(path, BINDING_SUFFIX);
        // Left by a start that failed half-way.
        if let Ok(Vacancy::StaleSocket) = vacancy(&binding).await {
            std::fs::remove_file(&binding)?;
        }
        let listener = UnixListener::bind(&binding)?;
        let placed =
            std::fs::set_permissions(&binding, std::fs::Permissions::from_mode(SOCKET_MODE))
                .and_then(|()| std::fs::rename(&binding, path))
                .and_then(|()| std::fs::symlink_metadata(path));
        match placed {
            Ok(metadata) => Ok(UnixSocket {
                listener,
                file: SocketFile {
                    path: path.to_owned(),
                    identity: (metadata.dev(), metadata.ino()),
                },
            }),
            Err(error) => {
                let _ = std::fs::remove_file(&binding);
                Err(error)
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.file.path
    }

    /// The accepted connections, each answered in one write ([`SingleWrite`]), and the file
    /// to keep for as long as they are served.
    pub fn incoming(
        self,
    ) -> (
        impl Stream<Item = io::Result<SingleWrite<UnixStream>>>,
        SocketFile,
    ) {
        use tokio_stream::StreamExt as _;
        let connections =
            UnixListenerStream::new(self.listener).map(|accepted| accepted.map(SingleWrite));
        (connections, self.file)
    }
}

impl Drop for SocketFile {
    /// Under the binding lock, so a successor cannot rename its socket into place between
    /// the check and the removal; while a successor holds it, the file is left to it.
    fn drop(&mut self) {
        let Ok(_lock) = lock_for_binding(&self.path) else {
            return;
        };
        let still_ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|metadata| (metadata.dev(), metadata.ino()) == self.identity);
        if still_ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Takes the lock on `path`'s `.lock` file, or fails at once if another process holds it.
/// The lock is released when the file is closed, also when the process dies.
fn lock_for_binding(path: &Path) -> io::Result<std::fs::File> {
    let lock_path = with_suffix(path, LOCK_SUFFIX);
    let file = open_lock_file(&lock_path)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "another process is binding or removing this socket at this moment (it holds {})",
                lock_path.display()
            ),
        )),
        Err(std::fs::TryLockError::Error(error)) => Err(about(&lock_path, error)),
    }
}

/// Opens (or creates, mode 0600) the lock file without following a link planted there or
/// blocking on a FIFO, and refuses anything that is no plain file.
fn open_lock_file(lock_path: &Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(lock_path);
    let not_a_file = || {
        io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} exists and is not a plain file (or is a symbolic link); it was left as it is",
                lock_path.display()
            ),
        )
    };
    match file {
        // What open answers for a symbolic link (O_NOFOLLOW), a directory and a socket.
        Err(error)
            if matches!(
                error.raw_os_error(),
                Some(libc::ELOOP | libc::EISDIR | libc::ENXIO)
            ) =>
        {
            Err(not_a_file())
        }
        Err(error) => Err(about(lock_path, error)),
        Ok(file) if !file.metadata()?.file_type().is_file() => Err(not_a_file()),
        Ok(file) => Ok(file),
    }
}

/// `error`, saying which file it is about: the caller names only the socket.
fn about(path: &Path, error: io::Error) -> io::Error {
    io::Error::new(error.kind(), format!("{}: {error}", path.display()))
}

/// A path a socket may be bound on.
enum Vacancy {
    Nothing,
    /// A socket file no process accepts on: connecting is refused.
    StaleSocket,
}

/// Whether `path` is free for a socket; why not, otherwise: a socket some process answers
/// on (or does not accept on in time: stopped, or its backlog full), one this process
/// cannot try, a symbolic link or anything else that is no socket.
async fn vacancy(path: &Path) -> io::Result<Vacancy> {
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vacancy::Nothing),
        Err(error) => return Err(error),
    };
    if !metadata.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the path exists and is not a socket (or is a symbolic link); it was left as it is",
        ));
    }
    match tokio::time::timeout(LIVENESS_TIMEOUT, UnixStream::connect(path)).await {
        Err(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "another process holds this socket: it did not accept a connection within {LIVENESS_TIMEOUT:?}"
            ),
        )),
        Ok(Ok(_)) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "another process answers on this socket",
        )),
        Ok(Err(error)) if error.kind() == io::ErrorKind::ConnectionRefused => {
            Ok(Vacancy::StaleSocket)
        }
        Ok(Err(error)) => Err(io::Error::new(
            error.kind(),
            format!("cannot tell whether another process answers on this socket: {error}"),
        )),
    }
}

#[cfg(test)]
mod tests;
