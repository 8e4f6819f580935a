use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

#[tokio::test]
async fn it_reports_no_vectored_writes_and_writes_the_first_buffer_of_a_vectored_one() {
    let (near, mut far) = tokio::io::duplex(64);
    let mut connection = SingleWrite(near);
    assert!(!connection.is_write_vectored());
    let buffers = [
        IoSlice::new(b""),
        IoSlice::new(b"abc"),
        IoSlice::new(b"def"),
    ];
    let written = connection.write_vectored(&buffers).await.unwrap();
    assert_eq!(written, 3, "one buffer per write");
    connection.write_all(b"!").await.unwrap();
    let mut received = [0; 4];
    far.read_exact(&mut received).await.unwrap();
    assert_eq!(&received, b"abc!");
    far.write_all(b"back").await.unwrap();
    let mut read = [0; 4];
    connection.read_exact(&mut read).await.unwrap();
    assert_eq!(&read, b"back");
}
