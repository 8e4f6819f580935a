use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::{HOLD_AT_MOST, WRITE_AT, batched, batched_every};

/// An output that keeps each `write` it is given, and holds the writes at a gate until the
/// test opens it.
#[derive(Clone, Default)]
struct Sink {
    writes: Arc<Mutex<Vec<Vec<u8>>>>,
    gate: Arc<(Mutex<bool>, Condvar)>,
    /// The next write panics.
    panics: Arc<AtomicBool>,
}

impl Sink {
    fn closed_gate() -> Sink {
        Sink::default()
    }

    fn open_gate() -> Sink {
        let sink = Sink::default();
        sink.open();
        sink
    }

    fn open(&self) {
        let (open, opened) = &*self.gate;
        *open.lock().unwrap() = true;
        opened.notify_all();
    }

    fn written(&self) -> Vec<u8> {
        self.writes.lock().unwrap().concat()
    }

    fn write_calls(&self) -> usize {
        self.writes.lock().unwrap().len()
    }

    fn wait_for(&self, bytes: usize) -> Vec<u8> {
        let started = Instant::now();
        loop {
            let written = self.written();
            if written.len() >= bytes || started.elapsed() > Duration::from_secs(10) {
                return written;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        assert!(
            !self.panics.swap(false, Ordering::SeqCst),
            "the output fails"
        );
        self.writes.lock().unwrap().push(bytes.to_vec());
        let (open, opened) = &*self.gate;
        let mut open = open.lock().unwrap();
        while !*open {
            open = opened.wait(open).unwrap();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn numbered_lines(count: usize, width: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|index| format!("{index:0width$}\n", width = width - 1).into_bytes())
        .collect()
}

#[test]
fn lines_leave_whole_in_order_and_in_few_writes() {
    let sink = Sink::open_gate();
    let (lines, _flusher) = batched(sink.clone());
    let expected = numbered_lines(1_000, 100);
    for line in &expected {
        (&lines).write_all(line).unwrap();
    }

    let expected = expected.concat();
    assert_eq!(sink.wait_for(expected.len()), expected);
    // A write per batch: here one or two (the first line's wait, or 64 KiB reached), far
    // from the thousand writes a line each would take.
    assert!(sink.write_calls() <= 20, "{} writes", sink.write_calls());
}

#[test]
fn a_full_batch_is_written_without_waiting_for_the_interval() {
    let sink = Sink::open_gate();
    let (lines, _flusher) = batched_every(sink.clone(), Duration::from_secs(600));
    let expected = numbered_lines(WRITE_AT / 100 + 1, 100);
    (&lines).write_all(&expected[0]).unwrap();
    // The writer, woken by the first line, now waits for the batch to fill.
    std::thread::sleep(Duration::from_millis(100));
    for line in &expected[1..] {
        (&lines).write_all(line).unwrap();
    }
    assert_eq!(sink.wait_for(WRITE_AT), expected.concat());
}

#[test]
fn a_line_alone_is_written_without_waiting_for_others() {
    let sink = Sink::open_gate();
    let (lines, _flusher) = batched(sink.clone());
    (&lines).write_all(b"alone\n").unwrap();
    assert_eq!(sink.wait_for(6), b"alone\n");
}

#[test]
fn what_is_pending_is_written_when_the_flusher_drops_and_later_lines_at_once() {
    let sink = Sink::open_gate();
    let (lines, flusher) = batched(sink.clone());
    let expected = numbered_lines(100, 50);
    for line in &expected {
        (&lines).write_all(line).unwrap();
    }
    drop(flusher);
    assert_eq!(sink.written(), expected.concat());

    (&lines).write_all(b"after\n").unwrap();
    assert!(sink.written().ends_with(b"after\n"));
}

#[test]
fn a_decision_waits_while_the_writer_is_behind_and_no_line_is_lost() {
    let sink = Sink::closed_gate();
    let (lines, flusher) = batched(sink.clone());
    let line_bytes = 1_024;
    let expected = numbered_lines(3 * HOLD_AT_MOST / line_bytes, line_bytes);
    let appended = Arc::new(AtomicUsize::new(0));
    let appending = {
        let expected = expected.clone();
        let appended = Arc::clone(&appended);
        std::thread::spawn(move || {
            for line in &expected {
                (&lines).write_all(line).unwrap();
                appended.fetch_add(1, Ordering::SeqCst);
            }
        })
    };

    // The writer took a first batch and is stuck in the output; the decisions may add up
    // to `HOLD_AT_MOST` more, then wait.
    std::thread::sleep(Duration::from_millis(300));
    let held = appended.load(Ordering::SeqCst) * line_bytes;
    assert!(
        !appending.is_finished(),
        "every line was appended ({held} bytes) while nothing could be written"
    );
    assert!(held <= 2 * HOLD_AT_MOST + line_bytes, "{held} bytes held");

    sink.open();
    appending.join().unwrap();
    drop(flusher);
    assert!(
        sink.written() == expected.concat(),
        "lines lost or reordered"
    );
}

#[test]
fn lines_from_many_threads_stay_whole_and_in_order_across_the_stop() {
    let sink = Sink::open_gate();
    let (lines, flusher) = batched(sink.clone());
    let appended = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..4)
        .map(|thread| {
            let lines = lines.clone();
            let appended = Arc::clone(&appended);
            std::thread::spawn(move || {
                for index in 0..2_000 {
                    let line = format!("{thread} {index:06} {}\n", "x".repeat(200));
                    (&lines).write_all(line.as_bytes()).unwrap();
                    appended.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    // Stopped while the threads append: the writer's last batch and the lines each thread
    // then writes itself must not overtake one another.
    while appended.load(Ordering::SeqCst) < 1_000 {
        std::thread::yield_now();
    }
    drop(flusher);
    for thread in threads {
        thread.join().unwrap();
    }

    let written = String::from_utf8(sink.written()).unwrap();
    let mut next = [0_usize; 4];
    for line in written.lines() {
        let mut fields = line.split(' ');
        let thread: usize = fields.next().unwrap().parse().unwrap();
        let index: usize = fields.next().unwrap().parse().unwrap();
        assert_eq!(fields.next().map(str::len), Some(200), "{line}");
        assert_eq!(index, next[thread], "thread {thread}'s lines in order");
        next[thread] += 1;
    }
    assert_eq!(next, [2_000; 4]);
}

#[test]
fn the_stop_waits_for_a_stalled_output_until_its_deadline_only() {
    let sink = Sink::closed_gate();
    let (lines, flusher) = batched_every(sink.clone(), Duration::ZERO);
    (&lines).write_all(b"stuck\n").unwrap();
    while sink.write_calls() == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }

    let stopping = Instant::now();
    flusher.finish_by(stopping + Duration::from_millis(100));
    assert!(stopping.elapsed() < Duration::from_secs(5));
    sink.open();
}

#[test]
fn decisions_write_their_own_lines_once_the_writer_is_gone() {
    let sink = Sink::open_gate();
    sink.panics.store(true, Ordering::SeqCst);
    let (lines, _flusher) = batched_every(sink.clone(), Duration::ZERO);
    (&lines).write_all(b"lost with the writer\n").unwrap();
    while sink.panics.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(1));
    }

    // More than the writer may fall behind by: without it, the decisions would wait for it.
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let line = vec![b'x'; 1_023]
            .into_iter()
            .chain([b'\n'])
            .collect::<Vec<_>>();
        for _ in 0..2 * HOLD_AT_MOST / line.len() {
            (&lines).write_all(&line).unwrap();
        }
        let _ = done.send(());
    });
    assert!(
        finished.recv_timeout(Duration::from_secs(20)).is_ok(),
        "the decisions wait for a writer that is gone"
    );
    assert_eq!(sink.written().len(), 2 * HOLD_AT_MOST);
}
