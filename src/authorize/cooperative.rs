//! A request of many entries (a batch or transaction of up to
//! [`MAX_BATCH_ENTRIES`](super::MAX_BATCH_ENTRIES), AuthZEN's evaluations) is read and
//! decided on the async runtime, entry by entry: a batch of 10,000 reads is about 25 ms of
//! one core in the release build. A pod of one CPU runs a single-threaded runtime, where
//! every call beside such a batch would wait that long. So each loop over a request's
//! entries awaits [`between_entries`] once an entry.

/// Yields to the runtime once this task has spent tokio's cooperative budget (128 units,
/// shared with the sockets and channels it polls), so that the calls beside it are served
/// every few hundred microseconds; otherwise it costs a thread-local read.
pub async fn between_entries() {
    tokio::task::coop::consume_budget().await;
}
