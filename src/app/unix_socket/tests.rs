use std::os::unix::fs::{FileTypeExt, PermissionsExt};

use super::*;

#[tokio::test]
async fn binds_with_owner_and_group_access_and_removes_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grpc.sock");
    let socket = UnixSocket::bind(&path).unwrap();
    let metadata = std::fs::symlink_metadata(&path).unwrap();
    assert!(metadata.file_type().is_socket());
    assert_eq!(metadata.permissions().mode() & 0o777, 0o660);
    drop(socket);
    assert!(
        !path.exists(),
        "the socket file is removed with the listener"
    );
}

#[tokio::test]
async fn replaces_a_socket_nothing_answers_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grpc.sock");
    // A listener of a process that was killed: its file stays behind.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let socket = UnixSocket::bind(&path).unwrap();
    assert!(tokio::net::UnixStream::connect(socket.path()).await.is_ok());
}

#[tokio::test]
async fn leaves_a_live_socket_and_a_plain_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.sock");
    let first = UnixSocket::bind(&live).unwrap();
    let error = UnixSocket::bind(&live).unwrap_err();
    assert!(
        error.to_string().contains("another process answers"),
        "{error}"
    );
    assert!(
        tokio::net::UnixStream::connect(first.path()).await.is_ok(),
        "the live socket still answers"
    );

    let plain = dir.path().join("notes.txt");
    std::fs::write(&plain, "keep me").unwrap();
    let error = UnixSocket::bind(&plain).unwrap_err();
    assert!(error.to_string().contains("not a socket"), "{error}");
    assert_eq!(std::fs::read_to_string(&plain).unwrap(), "keep me");
}
