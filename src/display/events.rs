//! `--json-events`: newline-delimited JSON on stdout, one object per line,
//! each with an `event` key (schema in README):
//! - `progress`, about once a second and once at the end;
//! - `file`, one per file, directory or symlink done, with what was done;
//! - `warning` and `error`, the log lines of those levels;
//! - `report`, last: the keys of `--json`.
//!
//! Each line is written whole under the lock of stdout, so lines from
//! different threads never mix.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pareco::codec::Kind;
use pareco::transfer::observe::EntryEvent;
use pareco::transfer::{Report, Snapshot, Watch};
use serde_json::{json, Map, Value};

/// Events are written (`--json-events`).
static ENABLED: AtomicBool = AtomicBool::new(false);

pub(crate) fn enable(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Writes one event: `"event": kind` first, then `fields` (sorted).
fn emit(kind: &str, fields: Map<String, Value>) {
    let Ok(rest) = serde_json::to_string(&fields) else { return };
    let comma = if fields.is_empty() { "" } else { "," };
    let line = format!("{{\"event\":\"{kind}\"{comma}{}", &rest[1..]);
    super::print_line(true, &line);
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// A `warning` or `error` event, if events are on.
pub(crate) fn log(level: &tracing::Level, message: &str) {
    if !enabled() {
        return;
    }
    let kind = if *level == tracing::Level::ERROR { "error" } else { "warning" };
    emit(kind, object(json!({ "message": message })));
}

/// The rate of bytes done over the last interval between progress events.
pub(crate) struct Rate {
    last: Option<(Instant, u64)>,
    per_sec: f64,
}

impl Rate {
    /// The rate since `since`, when nothing was done yet.
    pub(crate) fn since(since: Instant) -> Rate {
        Rate { last: Some((since, 0)), per_sec: 0.0 }
    }

    fn update(&mut self, bytes_done: u64) -> f64 {
        let now = Instant::now();
        if let Some((then, done)) = self.last {
            let seconds = now.duration_since(then).as_secs_f64();
            if seconds > 0.0 {
                self.per_sec = bytes_done.saturating_sub(done) as f64 / seconds;
            }
        }
        self.last = Some((now, bytes_done));
        self.per_sec
    }
}

/// A `progress` event: `now`, the rate since the last one, and an ETA at
/// that rate (a lower bound while the totals are not final).
pub(crate) fn progress(now: &Snapshot, elapsed: Duration, rate: &mut Rate) {
    let per_sec = rate.update(now.bytes_done);
    let left = now.bytes_total.saturating_sub(now.bytes_done);
    let eta = if left == 0 {
        Some(0.0)
    } else if per_sec > 0.0 {
        Some((left as f64 / per_sec * 10.0).round() / 10.0)
    } else {
        None
    };
    let mut fields = object(serde_json::to_value(now).unwrap_or_default());
    fields.insert("rate_bytes_per_s".into(), Value::from(per_sec as u64));
    fields.insert("eta_s".into(), eta.map_or(Value::Null, Value::from));
    fields.insert("elapsed_s".into(), Value::from((elapsed.as_secs_f64() * 1000.0).round() / 1000.0));
    emit("progress", fields);
}

/// The `report` event: exactly the keys of `--json`, and `event`.
pub(crate) fn report(report: &Report) {
    emit("report", object(serde_json::to_value(report).unwrap_or_default()));
}

/// Writes a `file` event for each entry done.
pub(crate) struct EntryEvents {
    /// `<` for an upload, `>` for a download (for `itemized`).
    pub(crate) sent: char,
}

impl Watch for EntryEvents {
    fn entry(&self, event: &EntryEvent) {
        let mut fields = object(serde_json::to_value(&event.outcome).unwrap_or_default());
        let kind = match event.kind {
            Kind::File => "file",
            Kind::Dir => "dir",
            Kind::Symlink => "symlink",
        };
        fields.insert("path".into(), Value::from(String::from_utf8_lossy(event.path.as_bytes())));
        fields.insert("kind".into(), Value::from(kind));
        fields.insert("size".into(), Value::from(event.size));
        let itemized = event.itemized(self.sent).and_then(|line| line.split(' ').next().map(str::to_owned));
        fields.insert("itemized".into(), itemized.map_or(Value::Null, Value::from));
        emit("file", fields);
    }
}

/// The tracing layer that turns warnings and errors into events (when
/// events are on).
pub(crate) struct LogEvents;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for LogEvents {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if !enabled() {
            return;
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        log(event.metadata().level(), &message.0);
    }
}

/// The `message` of a tracing event.
struct Message(String);

impl tracing::field::Visit for Message {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}
