//! The named scenarios and what they share.

pub mod churn;
pub mod fanout;
pub mod idle;
pub mod many;
pub mod persist;
pub mod trigger;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::load::{ConnOutcome, Pool};
use crate::net::Target;
use crate::track::{DeliveryTotals, Percentiles};

/// What every scenario gets.
pub struct Ctx {
    pub target: Arc<Target>,
    pub server_pid: Option<u32>,
    pub connect_concurrency: usize,
    pub progress: Duration,
}

impl Ctx {
    pub fn server_rss(&self) -> Option<u64> {
        self.server_pid.and_then(crate::procfs::rss_kib)
    }
}

/// A scenario's result: a summary, an optional table, JSON, and anything that went wrong.
#[derive(Default)]
pub struct Report {
    pub summary: Vec<(String, String)>,
    pub table: Option<Table>,
    pub json: serde_json::Map<String, Value>,
    /// Delivery or protocol errors; any makes the run fail.
    pub problems: Vec<String>,
}

pub struct Table {
    pub headers: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
}

impl Report {
    pub fn line(&mut self, name: &str, value: impl Into<String>) {
        self.summary.push((name.to_string(), value.into()));
    }

    pub fn set(&mut self, name: &str, value: impl serde::Serialize) {
        self.json.insert(
            name.to_string(),
            serde_json::to_value(value).unwrap_or(Value::Null),
        );
    }

    pub fn problem(&mut self, text: impl Into<String>) {
        self.problems.push(text.into());
    }

    pub fn print(&self) {
        let width = self.summary.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (k, v) in &self.summary {
            println!("  {k:<width$}  {v}");
        }
        if let Some(table) = &self.table {
            let mut widths: Vec<usize> = table.headers.iter().map(|h| h.len()).collect();
            for row in &table.rows {
                for (i, cell) in row.iter().enumerate() {
                    widths[i] = widths[i].max(cell.len());
                }
            }
            let fmt = |cells: Vec<&str>| {
                cells
                    .iter()
                    .enumerate()
                    .map(|(i, c)| format!("{c:>w$}", w = widths[i]))
                    .collect::<Vec<_>>()
                    .join("  ")
            };
            println!();
            println!("  {}", fmt(table.headers.clone()));
            for row in &table.rows {
                println!("  {}", fmt(row.iter().map(String::as_str).collect()));
            }
        }
        if self.problems.is_empty() {
            println!("\n  delivery: OK");
        } else {
            println!("\n  PROBLEMS:");
            for p in &self.problems {
                println!("  - {p}");
            }
        }
    }

    /// Records connection failures and drops seen by a pool.
    pub fn pool_problems(&mut self, pool_errors: &[String], outcomes: &[ConnOutcome]) {
        let failed = outcomes.iter().filter(|o| o.setup_error.is_some()).count();
        let dropped = outcomes
            .iter()
            .filter(|o| o.runtime_error.is_some())
            .count();
        self.set("connections_failed", failed);
        self.set("connections_dropped", dropped);
        if failed > 0 {
            self.problem(format!("{failed} connections could not connect/subscribe"));
        }
        if dropped > 0 {
            self.problem(format!(
                "{dropped} connections were dropped while receiving"
            ));
        }
        if failed + dropped > 0 {
            for e in pool_errors.iter().take(5) {
                self.problem(format!("  e.g. {e}"));
            }
        }
    }

    /// Records delivery totals; loss or duplication is a problem.
    pub fn delivery(&mut self, totals: &DeliveryTotals) {
        self.set("delivery", totals);
        self.line(
            "delivery",
            format!(
                "expected {}, received {}, lost {}, duplicated {}, reordered {}",
                totals.expected, totals.received, totals.lost, totals.duplicates, totals.reordered
            ),
        );
        if totals.lost > 0 {
            self.problem(format!("{} messages lost", totals.lost));
        }
        if totals.duplicates > 0 {
            self.problem(format!("{} duplicate deliveries", totals.duplicates));
        }
        if totals.reordered > 0 {
            self.problem(format!("{} deliveries out of order", totals.reordered));
        }
    }
}

/// Percentile summary for the table: "p50/p90/p99/max ms".
pub fn pct_line(p: &Percentiles) -> String {
    format!(
        "p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2} ms  (n={})",
        p.p50_ms, p.p90_ms, p.p99_ms, p.max_ms, p.count
    )
}

pub fn kib(v: u64) -> String {
    format!("{:.1} MiB", v as f64 / 1024.0)
}

/// Polls until `done()` or `timeout`.
pub async fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Stops the pool and returns outcomes plus the errors it noted.
pub async fn finish(pool: Pool) -> (Vec<String>, Vec<ConnOutcome>) {
    let errors = pool.errors();
    let outcomes = pool.stop().await;
    (errors, outcomes)
}
