//! The async runtime the service runs on.

/// The async runtime for the CPUs the process may use (its affinity and cgroup quota: what a
/// container is given). With one, a current-thread runtime: every task on this thread, no
/// worker to wake or hand tasks to, which cost `Health/Check` about a third of its server
/// CPU and a cached `CheckAccess` about a quarter (docs/performance-log.md, "One CPU, one
/// thread"). With more, one worker per CPU: a second worker on one CPU only wakes and
/// preempts the first. Either way bodies over 64 KiB are parsed on the blocking pool, and a
/// batch's entries hand the thread back between them (`authorize::between_entries`).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let cpus = std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1);
    let mut builder = if cpus == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(cpus);
        builder
    };
    builder.enable_all().build()
}
