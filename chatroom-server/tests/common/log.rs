//! A child process's stderr, read line by line on a thread of its own: the
//! pipe is always drained, so a chatty process never blocks on it. Every
//! line is kept (for failure messages and for checks over the whole log)
//! and also queued, so a test can wait for the next line that says
//! something.

use std::io::{BufRead, BufReader, Read};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

/// The lines a process wrote on stderr.
#[derive(Debug)]
pub(crate) struct Log {
    all: Arc<Mutex<Vec<String>>>,
    queue: mpsc::Receiver<String>,
    reader: Option<thread::JoinHandle<()>>,
}

impl Log {
    /// Starts reading `pipe`. With a `label`, lines that report an error are
    /// echoed on this process's stderr too, marked with it: a node of a
    /// cluster test says why it fails while the test is still waiting.
    pub(crate) fn capture(pipe: impl Read + Send + 'static, label: Option<String>) -> Self {
        let all = Arc::new(Mutex::new(Vec::new()));
        let (tx, queue) = mpsc::channel();
        let kept = all.clone();
        let reader = thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if let Some(label) = &label
                    && (line.contains("ERROR") || line.contains("error:"))
                {
                    eprintln!("[{label}] {line}");
                }
                kept.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(line.clone());
                let _ = tx.send(line);
            }
        });
        Self {
            all,
            queue,
            reader: Some(reader),
        }
    }

    /// The next line not consumed yet; `Err` on timeout, or once the
    /// process has closed stderr and every line was consumed.
    pub(crate) fn next_within(&self, limit: Duration) -> Result<String, mpsc::RecvTimeoutError> {
        self.queue.recv_timeout(limit)
    }

    /// The first line from now on that contains `needle`.
    ///
    /// # Panics
    /// After `limit`, or when stderr closes first; the message holds the
    /// whole log.
    pub(crate) fn wait_for(&self, needle: &str, limit: Duration) -> String {
        let end = Instant::now() + limit;
        loop {
            match self.next_within(end.saturating_duration_since(Instant::now())) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(e) => panic!(
                    "no log line with {needle:?} ({e}); the log:\n{}",
                    self.text()
                ),
            }
        }
    }

    /// Every line not consumed yet (see [`Log::wait_for`]).
    pub(crate) fn drain(&self) -> Vec<String> {
        self.queue.try_iter().collect()
    }

    /// Every line so far, consumed or not.
    pub(crate) fn lines(&self) -> Vec<String> {
        self.all.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Every line so far, one per line.
    pub(crate) fn text(&self) -> String {
        self.lines().join("\n")
    }

    /// Waits until the process has closed stderr (it has exited, say), so
    /// that [`Log::lines`] holds everything it wrote.
    pub(crate) fn finish(&mut self) {
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}
