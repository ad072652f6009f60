//! Building a model's parts on several threads while its weights load: each thread reads (and,
//! for an HF checkpoint, converts) its parts' tensors and copies them into staging memory, so
//! the host side of a load runs at several cores' memory bandwidth instead of one's. The GPU
//! side stays one stream (every enqueue goes through the capture gate).

/// Threads a load of one rank uses: `TRTLLM_LOAD_THREADS`, else the cores (less one, which
/// parses the tokenizer meanwhile) shared by the `ranks` ranks loading at once, at most 8
/// (beyond that the page cache and the copy engine, not the cores, are the limit).
pub fn load_threads(ranks: usize) -> usize {
    if let Some(n) = crate::env::knobs().load_threads {
        return n;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores.saturating_sub(1) / ranks.max(1)).clamp(1, 8)
}

/// `f` over `jobs` on up to `threads` threads (claimed in list order; in order on this thread
/// when `threads` is 1). The results come back in job order. On failure, jobs not yet started
/// are skipped and the error of the first failed job (in list order) is returned; a panicking
/// job is an error too.
pub fn map_jobs<J: Sync, T: Send>(
    threads: usize,
    jobs: &[J],
    f: impl Fn(&J) -> crate::Result<T> + Sync,
) -> crate::Result<Vec<T>> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
    use std::sync::Mutex;

    if threads <= 1 || jobs.len() <= 1 {
        return jobs.iter().map(&f).collect();
    }
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let slots: Vec<Mutex<Option<crate::Result<T>>>> = jobs.iter().map(|_| Mutex::new(None)).collect();
    let work = || loop {
        let i = next.fetch_add(1, SeqCst);
        if i >= jobs.len() || failed.load(SeqCst) {
            return;
        }
        let r = f(&jobs[i]);
        if r.is_err() {
            failed.store(true, SeqCst);
        }
        *slots[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
    };
    let panicked = std::thread::scope(|s| {
        let hs: Vec<_> = (1..threads.min(jobs.len())).map(|_| s.spawn(work)).collect();
        let here = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).is_err();
        hs.into_iter().map(|h| h.join().is_err()).fold(here, |a, b| a || b)
    });
    if panicked {
        return Err(crate::Error::Msg("a weight-loading thread panicked".into()));
    }
    let mut out = Vec::with_capacity(jobs.len());
    for slot in slots {
        match slot.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(Ok(t)) => out.push(t),
            // Jobs are claimed in list order, so every job before the first failure ran.
            Some(Err(e)) => return Err(e),
            None => {}
        }
    }
    if out.len() != jobs.len() {
        return Err(crate::Error::Msg("weight loading stopped without an error".into()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_job_order_and_the_first_error_wins() {
        let jobs: Vec<usize> = (0..50).collect();
        let out = map_jobs(4, &jobs, |&j| Ok(j * 2)).expect("all ok");
        assert_eq!(out, (0..50).map(|j| j * 2).collect::<Vec<_>>());
        let err = map_jobs(4, &jobs, |&j| {
            if j == 7 || j == 30 {
                Err(crate::Error::Msg(format!("job {j}")))
            } else {
                Ok(j)
            }
        });
        let msg = err.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("job 7") || msg.contains("job 30"), "{msg}");
        let seq =
            map_jobs(1, &jobs, |&j| if j >= 3 { Err(crate::Error::Msg(format!("job {j}"))) } else { Ok(j) });
        assert!(seq.err().map(|e| e.to_string()).unwrap_or_default().contains("job 3"));
        let p = map_jobs(3, &jobs, |&j| if j == 5 { panic!("boom") } else { Ok(j) });
        assert!(p.is_err());
    }
}
