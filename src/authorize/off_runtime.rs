//! JSON a caller forwarded (a stored resource, a request body, a FHIR server's answer) may
//! be megabytes: parsing it on the async runtime would stall every call on that worker, so
//! a large one is parsed on the blocking pool. One rule for every face.

/// Bodies larger than this are parsed off the async runtime.
pub const BLOCKING_PARSE_BYTES: usize = 64 * 1024;

/// `parse(body)`, on the blocking pool when `body` is larger than [`BLOCKING_PARSE_BYTES`];
/// `None` when that task was cancelled (the runtime shutting down).
pub async fn parse_off_runtime<T: Send + 'static>(body: &[u8], parse: fn(&[u8]) -> T) -> Option<T> {
    if body.len() <= BLOCKING_PARSE_BYTES {
        return Some(parse(body));
    }
    let body = body.to_vec();
    tokio::task::spawn_blocking(move || parse(&body)).await.ok()
}

/// `work()`, on the blocking pool when the bytes it reads or writes, `size`, are more than
/// [`BLOCKING_PARSE_BYTES`]: writing megabytes of JSON, or dropping the tree they were read
/// into, stalls the runtime as parsing them would. `None` when that task was cancelled.
pub async fn off_runtime_if_large<T: Send + 'static>(
    size: usize,
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    if size <= BLOCKING_PARSE_BYTES {
        return Some(work());
    }
    tokio::task::spawn_blocking(work).await.ok()
}

#[cfg(test)]
mod tests;
