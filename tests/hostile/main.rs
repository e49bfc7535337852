//! The hostile-input suite: what a holder of only the public app key (or no key at all) can
//! try, on real sockets and real HTTP, and the behaviour the server must keep. One module per
//! area; each test names the attack it reproduces. See docs/security.md for the limits.

#[path = "../common/mod.rs"]
mod common;

mod client;
mod listeners;
mod outbound;
mod storage;
