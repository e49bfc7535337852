//! The hub's handle on one connection: a bounded outbound queue and a way to close it.
//!
//! Publishers never await a socket. They `try_send` a shared [`Frame`] into the socket's
//! queue; a queue that is full means the client is not reading fast enough, and the socket is
//! closed with [`codes::OVER_CAPACITY`] instead of letting memory grow or slowing everyone else.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use rand::RngExt;
use tokio::sync::{Notify, mpsc};

use crate::protocol::codes;
use crate::protocol::frames::Frame;

/// A socket id as Pusher formats it: two decimal numbers joined by a dot (`123.456`). The
/// SDKs validate that shape, so ids are generated in it and kept as one integer internally.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketId(u64);

impl SocketId {
    pub fn random() -> Self {
        // Both halves non-zero and of similar magnitude to Pusher's ids.
        let mut rng = rand::rng();
        let hi: u32 = rng.random_range(1..=u32::MAX);
        let lo: u32 = rng.random_range(1..=u32::MAX);
        Self((u64::from(hi) << 32) | u64::from(lo))
    }

    pub fn parse(s: &str) -> Option<Self> {
        let (hi, lo) = s.split_once('.')?;
        let hi: u32 = hi.parse().ok()?;
        let lo: u32 = lo.parse().ok()?;
        Some(Self((u64::from(hi) << 32) | u64::from(lo)))
    }
}

impl fmt::Display for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

impl fmt::Debug for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

struct Shared {
    id: SocketId,
    tx: mpsc::Sender<Frame>,
    /// 0 while open; otherwise the close code the connection task must send.
    close_code: AtomicU16,
    close_signal: Notify,
}

/// Cheap to clone; every channel a socket joined holds one.
#[derive(Clone)]
pub struct SocketHandle(Arc<Shared>);

/// The connection task's side of the queue.
pub type SocketReceiver = mpsc::Receiver<Frame>;

impl SocketHandle {
    pub fn new(queue_len: usize) -> (Self, SocketReceiver) {
        let (tx, rx) = mpsc::channel(queue_len.max(1));
        let handle = Self(Arc::new(Shared {
            id: SocketId::random(),
            tx,
            close_code: AtomicU16::new(0),
            close_signal: Notify::new(),
        }));
        (handle, rx)
    }

    pub fn id(&self) -> SocketId {
        self.0.id
    }

    /// Queues a frame without waiting. Returns false if the frame was not queued (socket
    /// closing, or its queue overflowed, in which case it is told to close).
    pub fn send(&self, frame: Frame) -> bool {
        match self.0.tx.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                if self.close(codes::OVER_CAPACITY) {
                    metrics::counter!(crate::metrics::SLOW_SOCKETS_CLOSED).increment(1);
                    tracing::warn!(socket_id = %self.id(), "outbound queue full; closing slow socket");
                }
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Asks the connection to close with `code`. The first code asked for wins; returns
    /// whether this call was the first.
    pub fn close(&self, code: u16) -> bool {
        let first = self
            .0
            .close_code
            .compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if first {
            self.0.close_signal.notify_one();
        }
        first
    }

    pub fn same_socket(&self, other: &SocketHandle) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl SocketHandle {
    /// Resolves with the close code once someone asked this socket to close.
    pub async fn close_requested(&self) -> u16 {
        loop {
            let code = self.0.close_code.load(Ordering::Acquire);
            if code != 0 {
                return code;
            }
            self.0.close_signal.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_ids_round_trip_in_pusher_format() {
        for _ in 0..100 {
            let id = SocketId::random();
            let text = id.to_string();
            let (a, b) = text.split_once('.').unwrap();
            assert!(a.chars().all(|c| c.is_ascii_digit()) && !a.is_empty());
            assert!(b.chars().all(|c| c.is_ascii_digit()) && !b.is_empty());
            assert_eq!(SocketId::parse(&text), Some(id));
        }
        assert_eq!(SocketId::parse("abc"), None);
        assert_eq!(SocketId::parse("1.x"), None);
    }

    #[tokio::test]
    async fn overflow_closes_with_over_capacity() {
        let (handle, _rx) = SocketHandle::new(2);
        assert!(handle.send(Frame::from_static("a")));
        assert!(handle.send(Frame::from_static("b")));
        assert!(!handle.send(Frame::from_static("c")));
        assert_eq!(handle.close_requested().await, codes::OVER_CAPACITY);
        // The first reason is kept.
        assert!(!handle.close(codes::GOING_AWAY));
    }
}
