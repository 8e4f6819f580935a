//! The gRPC API on a Unix domain socket (`unix_listen`), beside the TCP listener.
//!
//! A socket file outlives a process that was killed: binding over one that nothing answers
//! on replaces it, while one a live server answers on, or a path that is no socket, stops
//! the start-up. The file is made readable and writable by owner and group only (connecting
//! needs write permission), and removed when the listener stops.

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::{UnixListener, UnixStream};
use tokio_stream::Stream;
use tokio_stream::wrappers::UnixListenerStream;

use super::single_write::SingleWrite;

/// Owner and group may connect; others may not.
const SOCKET_MODE: u32 = 0o660;

/// A bound socket.
#[derive(Debug)]
pub struct UnixSocket {
    listener: UnixListener,
    file: SocketFile,
}

/// The socket's file, removed when this is dropped.
#[derive(Debug)]
pub struct SocketFile(PathBuf);

impl UnixSocket {
    /// Binds `path`, replacing a stale socket file left by a process that is gone.
    pub fn bind(path: &Path) -> io::Result<UnixSocket> {
        let listener = match UnixListener::bind(path) {
            Err(error) if error.kind() == io::ErrorKind::AddrInUse => match stale(path) {
                Stale::Yes => {
                    std::fs::remove_file(path)?;
                    UnixListener::bind(path)?
                }
                Stale::Live => {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        "another process answers on this socket",
                    ));
                }
                Stale::NoSocket => {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        "the path exists and is not a socket; it was left as it is",
                    ));
                }
            },
            bound => bound?,
        };
        // Owned from here: a failure below removes the file again.
        let socket = UnixSocket {
            listener,
            file: SocketFile(path.to_owned()),
        };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))?;
        Ok(socket)
    }

    pub fn path(&self) -> &Path {
        &self.file.0
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
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What is at a path a socket could not be bound on.
enum Stale {
    /// A socket file no process accepts on: connecting is refused.
    Yes,
    /// A socket someone accepts on, or one this process may not try.
    Live,
    NoSocket,
}

fn stale(path: &Path) -> Stale {
    let is_socket =
        std::fs::symlink_metadata(path).is_ok_and(|metadata| metadata.file_type().is_socket());
    if !is_socket {
        return Stale::NoSocket;
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => Stale::Yes,
        _ => Stale::Live,
    }
}

#[cfg(test)]
mod tests;
