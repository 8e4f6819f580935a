//! JSON a caller forwarded (a stored resource, a request body, a FHIR server's answer) may
//! be megabytes: parsing it on the async runtime would stall every call on that worker, so
//! a large one is parsed on the blocking pool. One rule for every face.

use super::Refusal;
use super::tree_budget::{MeteredParse, TreeBudget};

/// Bodies larger than this are parsed off the async runtime.
pub const BLOCKING_PARSE_BYTES: usize = 64 * 1024;

/// `parse(body)`, its tree counted in `budget`, on the blocking pool when `body` is larger
/// than [`BLOCKING_PARSE_BYTES`]. `Err` when the budget refused the tree (or the copy of
/// `body` the pool reads), or the task was cancelled (the runtime stopping); the parse's own
/// error is in `T`. A call dropped while its parse runs leaves the parse its share of the
/// budget until it ends.
pub async fn parse_off_runtime<T: Send + 'static>(
    body: &[u8],
    budget: &mut TreeBudget,
    parse: MeteredParse<T>,
) -> Result<T, Refusal> {
    let parsed = if body.len() <= BLOCKING_PARSE_BYTES {
        budget.parse(body, parse)
    } else {
        // The copy the pool reads is counted in the fork, which holds it until the parse
        // ends, whether or not the call still waits for it.
        let mut fork = budget.fork();
        if !fork.take(body.len()) {
            budget.absorb(fork);
            return Err(refused(budget));
        }
        let body = body.to_vec();
        let (parsed, fork) = tokio::task::spawn_blocking(move || {
            let parsed = fork.parse(&body, parse);
            (parsed, fork)
        })
        .await
        .map_err(|_| Refusal::Overloaded(STOPPING.to_owned()))?;
        budget.absorb(fork);
        parsed
    };
    match budget.refusal() {
        Some(refusal) => Err(refusal),
        None => Ok(parsed),
    }
}

/// What a call whose parse was cancelled is told.
const STOPPING: &str = "parsing was cancelled: the service is stopping";

fn refused(budget: &TreeBudget) -> Refusal {
    budget
        .refusal()
        .unwrap_or_else(|| Refusal::Overloaded(STOPPING.to_owned()))
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
