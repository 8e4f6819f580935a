//! Audit lines written in batches. With `audit = "all"` a line per decision went to stdout
//! as a `write` of its own, on the thread that decided: to a pipe, as a container's stdout
//! is, that took a third of a cached `CheckAccess`'s throughput (docs/performance-log.md,
//! "Audit lines in batches"). Here a decision appends its line to a buffer, and a thread of
//! its own writes the buffer out [`FLUSH_AFTER`] after it wakes for the buffer's first line,
//! or as soon as the buffer holds [`WRITE_AT`] bytes.
//!
//! No line is dropped for want of room, and none waits unbounded in memory: a decision that
//! finds [`HOLD_AT_MOST`] bytes not yet taken waits for the writer, as it waited for a slow
//! stdout before. Lines leave in the order they were appended, each whole. [`Flusher`] writes
//! what is left when the service stops; a line appended after that is written at once by
//! its own thread. What a write refuses is lost, as a line was before (the writer logs its
//! first failure). A process killed outright (SIGKILL, out of memory) loses the lines still
//! in memory: those of its last few tens of milliseconds, up to twice [`HOLD_AT_MOST`] when
//! stdout is behind (the batch being written and the one waiting); a stop whose deadline
//! passes mid-write may leave the last line written cut short.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing_subscriber::fmt::MakeWriter;

/// How long a batch waits for more lines once the writer has woken for its first.
pub const FLUSH_AFTER: Duration = Duration::from_millis(20);
/// A buffer this large is written without waiting for [`FLUSH_AFTER`]: a pipe's capacity.
pub const WRITE_AT: usize = 64 * 1024;
/// Lines not yet taken by the writer beyond which a decision waits for it: some 25 ms of
/// lines at 100,000 decisions a second.
pub const HOLD_AT_MOST: usize = 1024 * 1024;
/// How long [`Flusher`]'s drop waits for the last lines to be written.
const FINISH_WITHIN: Duration = Duration::from_secs(5);

/// Starts the thread that writes the lines appended through the returned writer to `out`.
/// Should the thread not start, every line is written at once by the thread that appends
/// it, as if the service were stopping.
pub fn batched(out: impl Write + Send + 'static) -> (BatchedLines, Flusher) {
    batched_every(out, FLUSH_AFTER)
}

/// [`batched`] with another wait than [`FLUSH_AFTER`].
fn batched_every(out: impl Write + Send + 'static, every: Duration) -> (BatchedLines, Flusher) {
    let shared = Arc::new(Shared {
        pending: Mutex::new(Pending::default()),
        arrived: Condvar::new(),
        taken: Condvar::new(),
        out: Mutex::new(Box::new(out)),
        every,
        failed: AtomicBool::new(false),
    });
    let thread = {
        let shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || shared.write_batches())
    };
    let thread = match thread {
        Ok(thread) => Some(thread),
        Err(_) => {
            lock(&shared.pending).closed = true;
            None
        }
    };
    (
        BatchedLines {
            shared: Arc::clone(&shared),
        },
        Flusher { shared, thread },
    )
}

/// The audit output: each `write` appends to the batch (the audit layer writes one whole
/// line at a time).
#[derive(Clone)]
pub struct BatchedLines {
    shared: Arc<Shared>,
}

/// Writes what is left and stops the writer's thread when dropped.
pub struct Flusher {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    pending: Mutex<Pending>,
    /// The writer waits here for a batch's first line, or for the batch to fill.
    arrived: Condvar,
    /// Decisions wait here while [`HOLD_AT_MOST`] bytes are pending.
    taken: Condvar,
    /// Held while a batch is taken and written, so batches leave in the order they were
    /// taken, whichever thread writes them.
    out: Mutex<Box<dyn Write + Send>>,
    /// [`FLUSH_AFTER`], but in tests.
    every: Duration,
    /// A write has failed: logged once.
    failed: AtomicBool,
}

#[derive(Default)]
struct Pending {
    lines: Vec<u8>,
    /// The writer's thread is stopping or gone: whoever appends writes.
    closed: bool,
}

impl Shared {
    fn append(&self, line: &[u8]) {
        let mut pending = lock(&self.pending);
        while pending.lines.len() >= HOLD_AT_MOST && !pending.closed {
            pending = self
                .taken
                .wait(pending)
                .unwrap_or_else(PoisonError::into_inner);
        }
        let before = pending.lines.len();
        pending.lines.extend_from_slice(line);
        if pending.closed {
            drop(pending);
            // As before batching, a line that cannot be written is lost, never a decision;
            // not logged from here, inside the audit layer's own event.
            let _ = self.write_pending();
        } else if before == 0 || (before < WRITE_AT && pending.lines.len() >= WRITE_AT) {
            // Only a batch's first line and the one that fills it wake the writer, so the
            // lines between cost no system call.
            drop(pending);
            self.arrived.notify_one();
        }
    }

    /// Takes every pending line and writes them. Lines appended meanwhile go to the next
    /// batch, which cannot be written before this one.
    fn write_pending(&self) -> io::Result<()> {
        let mut out = lock(&self.out);
        let batch = {
            let mut pending = lock(&self.pending);
            if pending.lines.is_empty() {
                return Ok(());
            }
            // The next batch starts with room for a whole one, so it is not regrown under
            // the lock the decisions take.
            let room = if pending.closed { 0 } else { WRITE_AT };
            std::mem::replace(&mut pending.lines, Vec::with_capacity(room))
        };
        self.taken.notify_all();
        out.write_all(&batch).and_then(|()| out.flush())
    }

    /// Writes what is pending from the writer's thread; lines that cannot be written are
    /// lost, never a decision, and the first such failure is logged.
    fn write_pending_or_report(&self) {
        if let Err(error) = self.write_pending()
            && !self.failed.swap(true, Ordering::Relaxed)
        {
            tracing::error!(%error, "audit lines could not be written to stdout; they are lost while it fails");
        }
    }

    /// The writer's thread: waits for a first line, gives the batch [`FLUSH_AFTER`] to grow
    /// (less once it holds [`WRITE_AT`] bytes), writes it; until closed with nothing left.
    fn write_batches(&self) {
        let _closes = ClosesOnExit(self);
        loop {
            {
                let mut pending = lock(&self.pending);
                while pending.lines.is_empty() && !pending.closed {
                    pending = self
                        .arrived
                        .wait(pending)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                if pending.lines.is_empty() {
                    return;
                }
                let due = Instant::now() + self.every;
                while pending.lines.len() < WRITE_AT && !pending.closed {
                    let Some(left) = due.checked_duration_since(Instant::now()) else {
                        break;
                    };
                    pending = self
                        .arrived
                        .wait_timeout(pending, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
            self.write_pending_or_report();
        }
    }
}

impl<'a> MakeWriter<'a> for BatchedLines {
    type Writer = &'a BatchedLines;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

impl Write for &BatchedLines {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        self.shared.append(line);
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Should the writer's thread end for any reason, the decisions write their own lines
/// rather than wait for it.
struct ClosesOnExit<'a>(&'a Shared);

impl Drop for ClosesOnExit<'_> {
    fn drop(&mut self) {
        lock(&self.0.pending).closed = true;
        self.0.taken.notify_all();
    }
}

impl Flusher {
    /// Tells the writer to write what is left and stop; from now on each line is written by
    /// the thread that appends it.
    pub fn close(&self) {
        lock(&self.shared.pending).closed = true;
        self.shared.arrived.notify_all();
        self.shared.taken.notify_all();
    }

    /// Closes, and waits for the last lines until `deadline` at most: a stdout nobody reads
    /// would keep the writer blocked, and the process must still stop.
    pub fn finish_by(mut self, deadline: Instant) {
        self.close();
        self.wait_until(deadline);
    }

    fn wait_until(&mut self, deadline: Instant) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        while !thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        if thread.is_finished() {
            let _ = thread.join();
            // Lines appended after the thread's last batch, had it ended early.
            self.shared.write_pending_or_report();
        } else {
            tracing::error!(
                "audit lines were still being written when the service stopped; those not yet written are lost"
            );
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.close();
        self.wait_until(Instant::now() + FINISH_WITHIN);
    }
}

impl std::fmt::Debug for Flusher {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Flusher")
            .field("running", &self.thread.is_some())
            .finish()
    }
}

/// A lock whose holder panicked still guards whole lines: every change under it is one
/// `extend` or `take`.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
