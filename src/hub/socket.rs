//! The hub's handle on one connection: a bounded outbound queue and a way to close it.
//!
//! Publishers never await a socket. They `try_send` a shared [`Frame`] into the socket's
//! queue; a queue that is full means the client is not reading fast enough, and the socket is
//! closed with [`codes::OVER_CAPACITY`] instead of letting memory grow or slowing everyone else.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use rand::RngExt;
use std::collections::VecDeque;

use parking_lot::Mutex;
use tokio::sync::Notify;

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
    /// Frames waiting to be written.
    queue: Mutex<Queue>,
    capacity: usize,
    /// 0 while open; otherwise the close code the connection task must send.
    close_code: AtomicU16,
    /// Wakes the connection task: frames queued, or a close asked for.
    wake: Notify,
}

/// Frames waiting for one socket, oldest first. A socket usually has at most one frame waiting,
/// so the first sits inline and the deque behind it only holds a burst's backlog; the deque's
/// memory is given back as soon as the burst drains. An idle socket owns no queue memory.
#[derive(Default)]
struct Queue {
    /// The oldest waiting frame. `None` implies `backlog` is empty.
    head: Option<Frame>,
    backlog: VecDeque<Frame>,
    /// The connection task is gone; frames would never be written.
    finished: bool,
}

impl Queue {
    fn len(&self) -> usize {
        usize::from(self.head.is_some()) + self.backlog.len()
    }

    fn is_empty(&self) -> bool {
        self.head.is_none()
    }

    fn push(&mut self, frame: Frame) {
        if self.head.is_none() {
            self.head = Some(frame);
        } else {
            self.backlog.push_back(frame);
        }
    }

    fn pop(&mut self) -> Option<Frame> {
        let frame = self.head.take()?;
        self.head = self.backlog.pop_front();
        if self.backlog.is_empty() && self.backlog.capacity() > 0 {
            self.backlog = VecDeque::new();
        }
        Some(frame)
    }
}

/// Cheap to clone; every channel a socket joined holds one.
#[derive(Clone)]
pub struct SocketHandle(Arc<Shared>);

/// The connection task's side of the queue. Dropping it marks the socket finished, so
/// publishers stop queueing frames for it.
pub struct SocketReceiver(Arc<Shared>);

/// What woke the connection task.
#[derive(Debug, PartialEq, Eq)]
pub enum Work {
    /// Frames are queued.
    Frames,
    /// Someone asked the socket to close with this code.
    Close(u16),
}

impl SocketHandle {
    pub fn new(queue_len: usize) -> (Self, SocketReceiver) {
        let shared = Arc::new(Shared {
            id: SocketId::random(),
            queue: Mutex::new(Queue::default()),
            capacity: queue_len.max(1),
            close_code: AtomicU16::new(0),
            wake: Notify::new(),
        });
        (Self(shared.clone()), SocketReceiver(shared))
    }

    pub fn id(&self) -> SocketId {
        self.0.id
    }

    /// Queues a frame without waiting. Returns false if the frame was not queued (socket
    /// finished, or its queue overflowed, in which case it is told to close).
    pub fn send(&self, frame: Frame) -> bool {
        {
            let mut queue = self.0.queue.lock();
            if queue.finished {
                return false;
            }
            if queue.len() < self.0.capacity {
                queue.push(frame);
                drop(queue);
                self.0.wake.notify_one();
                return true;
            }
        }
        if self.close(codes::OVER_CAPACITY) {
            metrics::counter!(crate::metrics::SLOW_SOCKETS_CLOSED).increment(1);
            tracing::warn!(socket_id = %self.id(), "outbound queue full; closing slow socket");
        }
        false
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
            self.0.wake.notify_one();
        }
        first
    }

    pub fn same_socket(&self, other: &SocketHandle) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl SocketReceiver {
    /// Waits until there is something to do. Cancel-safe: state is checked before every wait,
    /// so a wake-up lost to a dropped future is found on the next call.
    pub async fn work(&self) -> Work {
        loop {
            let code = self.0.close_code.load(Ordering::Acquire);
            if code != 0 {
                return Work::Close(code);
            }
            if !self.0.queue.lock().is_empty() {
                return Work::Frames;
            }
            self.0.wake.notified().await;
        }
    }

    /// Waits until someone asks the socket to close; returns the code. For a connection
    /// task that is stuck writing and only needs to know whether to give up early.
    pub async fn close_requested(&self) -> u16 {
        loop {
            let code = self.0.close_code.load(Ordering::Acquire);
            if code != 0 {
                return code;
            }
            self.0.wake.notified().await;
        }
    }

    /// The next queued frame, if any.
    pub fn pop(&self) -> Option<Frame> {
        self.0.queue.lock().pop()
    }
}

impl Drop for SocketReceiver {
    fn drop(&mut self) {
        let mut queue = self.0.queue.lock();
        *queue = Queue {
            finished: true,
            ..Queue::default()
        };
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

    #[test]
    fn queue_keeps_order_and_releases_its_backlog() {
        let mut queue = Queue::default();
        for frame in ["1", "2", "3"] {
            queue.push(Frame::from_static(frame));
        }
        assert_eq!(queue.len(), 3);
        assert!(queue.backlog.capacity() > 0);
        assert_eq!(queue.pop().as_deref(), Some("1"));
        assert_eq!(queue.pop().as_deref(), Some("2"));
        // The burst is over: the backlog's memory is gone while the last frame waits.
        assert_eq!(queue.backlog.capacity(), 0);
        assert_eq!(queue.len(), 1);
        assert_eq!(queue.pop().as_deref(), Some("3"));
        assert!(queue.is_empty());
        assert_eq!(queue.pop(), None);
    }

    #[tokio::test]
    async fn overflow_closes_with_over_capacity() {
        let (handle, rx) = SocketHandle::new(2);
        assert!(handle.send(Frame::from_static("a")));
        assert!(handle.send(Frame::from_static("b")));
        assert!(!handle.send(Frame::from_static("c")));
        assert_eq!(rx.work().await, Work::Close(codes::OVER_CAPACITY));
        // The first reason is kept.
        assert!(!handle.close(codes::GOING_AWAY));
    }

    #[tokio::test]
    async fn frames_come_out_in_order_and_stop_when_finished() {
        let (handle, rx) = SocketHandle::new(8);
        let waiter = tokio::spawn(async move {
            let work = rx.work().await;
            (work, rx)
        });
        tokio::task::yield_now().await;
        assert!(handle.send(Frame::from_static("1")));
        assert!(handle.send(Frame::from_static("2")));
        let (work, rx) = waiter.await.unwrap();
        assert_eq!(work, Work::Frames);
        assert_eq!(rx.pop().as_deref(), Some("1"));
        assert_eq!(rx.pop().as_deref(), Some("2"));
        assert_eq!(rx.pop(), None);
        drop(rx);
        assert!(!handle.send(Frame::from_static("late")));
    }
}
