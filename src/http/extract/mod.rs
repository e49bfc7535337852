//! Request extractors: what a handler takes to know who is asking and what they sent.
//!
//! [`Signed`] authenticates a Pusher HTTP API request by its signature; [`Session`] finds the
//! app a Pushi REST request is logged into; [`Fields`] reads a Pushi request's named values
//! from the query string and the body alike; [`Secure`] says whether the client came over TLS. Each refuses a request with an [`ApiError`]
//! naming the problem, so handlers start from checked input.
//!
//! [`ApiError`]: super::error::ApiError

mod fields;
mod secure;
mod session;
mod signed;

pub use fields::{Fields, MAX_COUNT, flag_value};
pub use secure::Secure;
pub use session::{Session, session_from_form, session_token};
pub use signed::Signed;

/// Largest body any route reads: a full batch of ten maximum-size events fits easily.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
