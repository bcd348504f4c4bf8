//! `SLUICE_SIM_OPENRAFT_LOG=<file>`: writes openraft's debug events, each
//! with its span context (`RaftCore{id=1}:replication{target=3}` says which
//! node and which stream), to a file. Without it a stalled seed shows only
//! the end state; with it, why (it found the 30 s stall after a lost
//! snapshot answer that [`super::CONVERGE_WITHIN`] allows for). Heavy (tens
//! of MB per seed): use with `SLUICE_SIM_SEED`. The raft crate has no
//! `tracing-subscriber`, hence this small subscriber of its own.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// The fields of a span or event, as ` name=value` each.
struct Fields(String);
impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={:?}", field.name(), value);
    }
}

/// A span: its parent, name and fields.
type Span = (Option<u64>, &'static str, String);

/// Installed as the process's global subscriber (once: later calls do
/// nothing, so every seed of the process logs to the first file).
pub(super) struct Log {
    start: Instant,
    next: AtomicU64,
    spans: Mutex<HashMap<u64, Span>>,
    out: Mutex<std::io::BufWriter<std::fs::File>>,
}

thread_local! {
    /// The spans entered on this thread, innermost last.
    static STACK: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Log {
    pub(super) fn install(path: &str) {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            let log = Log {
                start: Instant::now(),
                next: AtomicU64::new(1),
                spans: Mutex::new(HashMap::new()),
                out: Mutex::new(std::io::BufWriter::new(
                    std::fs::File::create(path).unwrap_or_else(|e| panic!("{path}: {e}")),
                )),
            };
            // Fails only if another test installed a subscriber first.
            let _ = tracing::subscriber::set_global_default(log);
        });
    }
    /// The names and fields of span `at` and its ancestors, outermost first.
    fn context(&self, mut at: Option<u64>) -> String {
        let spans = self.spans.lock().unwrap_or_else(|p| p.into_inner());
        let mut parts = Vec::new();
        while let Some(id) = at {
            let Some((parent, name, fields)) = spans.get(&id) else {
                break;
            };
            parts.push(format!("{name}{{{}}}", fields.trim()));
            at = *parent;
        }
        parts.reverse();
        parts.join(":")
    }
    /// Writes out what is buffered (after each seed).
    pub(super) fn flush() {
        tracing::dispatcher::get_default(|d| {
            if let Some(log) = d.downcast_ref::<Log>() {
                let _ = log.out.lock().unwrap_or_else(|p| p.into_inner()).flush();
            }
        });
    }
}

impl Subscriber for Log {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        *m.level() <= Level::DEBUG && m.target().starts_with("openraft")
    }
    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let parent = if let Some(p) = attrs.parent() {
            Some(p.into_u64())
        } else if attrs.is_contextual() {
            STACK.with(|s| s.borrow().last().copied())
        } else {
            None
        };
        let mut f = Fields(String::new());
        attrs.record(&mut f);
        self.spans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, (parent, attrs.metadata().name(), f.0));
        Id::from_u64(id)
    }
    fn record(&self, span: &Id, values: &Record<'_>) {
        let mut f = Fields(String::new());
        values.record(&mut f);
        if let Some(s) = self
            .spans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&span.into_u64())
        {
            s.2.push_str(&f.0);
        }
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let at = if let Some(p) = event.parent() {
            Some(p.into_u64())
        } else {
            STACK.with(|s| s.borrow().last().copied())
        };
        let mut f = Fields(String::new());
        event.record(&mut f);
        let line = format!(
            "{:>6} {} {} [{}]{}\n",
            self.start.elapsed().as_millis(),
            event.metadata().level(),
            event.metadata().target(),
            self.context(at),
            f.0
        );
        let _ = self
            .out
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .write_all(line.as_bytes());
    }
    fn enter(&self, span: &Id) {
        STACK.with(|s| s.borrow_mut().push(span.into_u64()));
    }
    fn exit(&self, span: &Id) {
        STACK.with(|s| {
            let mut s = s.borrow_mut();
            if let Some(pos) = s.iter().rposition(|x| *x == span.into_u64()) {
                s.remove(pos);
            }
        });
    }
}
