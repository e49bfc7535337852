//! persist: Pushi-dialect publishes with `persist: true` (`POST /events?sid=`), events/s.
//! Which database backs the server (SQLite, PostgreSQL) is the server's configuration; run
//! the scenario once per configuration.

use anyhow::Result;

use super::{Ctx, Report, trigger};

pub async fn run(ctx: &Ctx, args: &trigger::Args) -> Result<Report> {
    trigger::run(ctx, args, true).await
}
