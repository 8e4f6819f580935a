use std::os::unix::fs::{FileTypeExt, PermissionsExt};

use super::*;

#[tokio::test]
async fn binds_with_owner_and_group_access_and_removes_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grpc.sock");
    let socket = UnixSocket::bind(&path).await.unwrap();
    let metadata = std::fs::symlink_metadata(&path).unwrap();
    assert!(metadata.file_type().is_socket());
    assert_eq!(metadata.permissions().mode() & 0o777, 0o660);
    assert!(UnixStream::connect(&path).await.is_ok());
    let mut binding = path.as_os_str().to_owned();
    binding.push(BINDING_SUFFIX);
    assert!(!Path::new(&binding).exists(), "the temporary name is gone");
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
    let socket = UnixSocket::bind(&path).await.unwrap();
    assert!(UnixStream::connect(socket.path()).await.is_ok());
}

#[tokio::test]
async fn leaves_a_live_socket_a_plain_file_and_a_link_alone() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.sock");
    let first = UnixSocket::bind(&live).await.unwrap();
    let error = UnixSocket::bind(&live).await.unwrap_err();
    assert!(
        error.to_string().contains("another process answers"),
        "{error}"
    );
    assert!(
        UnixStream::connect(first.path()).await.is_ok(),
        "the live socket still answers"
    );

    let plain = dir.path().join("notes.txt");
    std::fs::write(&plain, "keep me").unwrap();
    let error = UnixSocket::bind(&plain).await.unwrap_err();
    assert!(error.to_string().contains("not a socket"), "{error}");
    assert_eq!(std::fs::read_to_string(&plain).unwrap(), "keep me");

    // A link is never followed, to a socket or elsewhere.
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    for target in [&stale, &plain] {
        let link = dir.path().join("link.sock");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(target, &link).unwrap();
        let error = UnixSocket::bind(&link).await.unwrap_err();
        assert!(error.to_string().contains("symbolic link"), "{error}");
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }
}

#[tokio::test]
async fn a_successors_socket_outlives_this_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grpc.sock");
    let draining = UnixSocket::bind(&path).await.unwrap();
    // While this one drains, its file is replaced by a successor's.
    std::fs::remove_file(&path).unwrap();
    let successor = UnixSocket::bind(&path).await.unwrap();
    drop(draining);
    assert!(path.exists(), "the successor's file stays");
    assert!(UnixStream::connect(successor.path()).await.is_ok());
}

#[tokio::test]
async fn refuses_to_bind_while_another_process_binds_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grpc.sock");
    let lock_path = dir.path().join("grpc.sock.lock");
    // Another process between its check of the path and its rename into place.
    let other = std::fs::File::create(&lock_path).unwrap();
    other.lock().unwrap();
    let error = UnixSocket::bind(&path).await.unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::AddrInUse);
    assert!(
        error
            .to_string()
            .contains("another process is binding or removing"),
        "{error}"
    );
    assert!(!path.exists(), "nothing was bound");
    drop(other);

    let socket = UnixSocket::bind(&path).await.unwrap();
    let lock = std::fs::File::open(&lock_path).unwrap();
    assert!(lock.try_lock().is_ok(), "the lock is released once bound");
    drop(lock);
    drop(socket);
    assert!(!path.exists(), "the socket file is removed");
    assert!(lock_path.exists(), "the lock file is kept");
}

#[tokio::test]
async fn never_follows_a_link_in_place_of_the_lock_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grpc.sock");
    let lock_path = dir.path().join("grpc.sock.lock");
    let target = dir.path().join("elsewhere");
    std::fs::write(&target, "keep me").unwrap();
    std::os::unix::fs::symlink(&target, &lock_path).unwrap();
    let error = UnixSocket::bind(&path).await.unwrap_err();
    assert!(error.to_string().contains("not a plain file"), "{error}");
    assert!(!path.exists());
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");

    // A link to nothing: creating the lock file must not create its target.
    std::fs::remove_file(&lock_path).unwrap();
    let nowhere = dir.path().join("nowhere");
    std::os::unix::fs::symlink(&nowhere, &lock_path).unwrap();
    let error = UnixSocket::bind(&path).await.unwrap_err();
    assert!(error.to_string().contains("not a plain file"), "{error}");
    assert!(!nowhere.exists(), "the link's target was not created");

    // Nor is anything else that is no plain file locked: a directory, a socket.
    std::fs::remove_file(&lock_path).unwrap();
    std::fs::create_dir(&lock_path).unwrap();
    let error = UnixSocket::bind(&path).await.unwrap_err();
    assert!(error.to_string().contains("not a plain file"), "{error}");
    std::fs::remove_dir(&lock_path).unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(&lock_path).unwrap();
    let error = UnixSocket::bind(&path).await.unwrap_err();
    assert!(error.to_string().contains("not a plain file"), "{error}");
    assert!(!path.exists());
}

#[tokio::test]
async fn leaves_the_file_to_a_successor_that_is_binding() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grpc.sock");
    let socket = UnixSocket::bind(&path).await.unwrap();
    // A successor between its check of the path and its rename into place: removing the
    // file now could remove the socket it is about to put there.
    let successor = std::fs::File::open(dir.path().join("grpc.sock.lock")).unwrap();
    successor.lock().unwrap();
    drop(socket);
    assert!(path.exists(), "the file is left to the successor");
}
