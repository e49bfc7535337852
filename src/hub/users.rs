//! Signed-in users: Pusher's user authentication, watchlists and `terminate_connections`.
//!
//! A user is online while any of their sockets, on any node, is signed in. Watchers hear
//! `online` when the first socket signs in cluster-wide and `offline` when the last one goes;
//! transitions caused by other nodes arrive through the cluster
//! ([`LocalNode::user_changed`](crate::cluster::LocalNode::user_changed)).

use std::sync::Arc;

use dashmap::mapref::entry::Entry;

use super::app_state::AppState;
use super::socket::SocketHandle;
use crate::cluster::Change;
use crate::protocol::{codes, frames};

/// A signed-in user as the connection remembers it, so it can be signed out.
pub struct SignedIn {
    pub user_id: Arc<str>,
    pub watchlist: Vec<Arc<str>>,
}

impl AppState {
    /// Signs `handle` in as `user`: registers it for `terminate_connections`, tells watchers
    /// the user came online (first socket), and tells this socket which watched users are
    /// online now.
    pub fn sign_in(&self, handle: &SocketHandle, user: &SignedIn) {
        let first = {
            let mut sockets = self.users.entry(user.user_id.clone()).or_default();
            sockets.push(handle.clone());
            sockets.len() == 1
        };
        self.share(|| Change::SignIn {
            app: self.app.read().id.clone(),
            user_id: user.user_id.to_string(),
        });
        if first && !self.remote_user_signed_in(&user.user_id) {
            self.notify_watchers(&user.user_id, "online");
        }
        for watched in &user.watchlist {
            self.watchers
                .entry(watched.clone())
                .or_default()
                .push(handle.clone());
        }
        let online: Vec<&str> = user
            .watchlist
            .iter()
            .filter(|w| self.users.contains_key(&***w) || self.remote_user_signed_in(w))
            .map(|w| &**w)
            .collect();
        if !online.is_empty() {
            handle.send(frames::watchlist_event("online", &online));
        }
    }

    /// Signs `handle` out (its connection closed); the user's last socket anywhere going
    /// tells watchers `offline`.
    pub(super) fn sign_out(&self, handle: &SocketHandle, user: &SignedIn) {
        let (removed, last) = match self.users.entry(user.user_id.clone()) {
            Entry::Occupied(mut e) => {
                let before = e.get().len();
                e.get_mut().retain(|h| !h.same_socket(handle));
                let after = e.get().len();
                if after == 0 {
                    e.remove();
                }
                (after < before, after == 0)
            }
            Entry::Vacant(_) => (false, false),
        };
        if removed {
            self.share(|| Change::SignOut {
                app: self.app.read().id.clone(),
                user_id: user.user_id.to_string(),
            });
        }
        for watched in &user.watchlist {
            if let Entry::Occupied(mut e) = self.watchers.entry(watched.clone()) {
                e.get_mut().retain(|h| !h.same_socket(handle));
                if e.get().is_empty() {
                    e.remove();
                }
            }
        }
        if last && !self.remote_user_signed_in(&user.user_id) {
            self.notify_watchers(&user.user_id, "offline");
        }
    }

    /// Whether a socket on this node is signed in as `user_id`.
    pub fn local_user_signed_in(&self, user_id: &str) -> bool {
        self.users.contains_key(user_id)
    }

    /// Whether a socket on another node is signed in as `user_id`.
    fn remote_user_signed_in(&self, user_id: &str) -> bool {
        self.cluster
            .as_ref()
            .is_some_and(|c| c.remote_user_signed_in(&self.app.read().id, user_id))
    }

    /// Another node's sockets made `user_id` come online or go offline cluster-wide: tell
    /// this node's watchers.
    pub fn announce_remote_user(&self, user_id: &str, online: bool) {
        self.notify_watchers(user_id, if online { "online" } else { "offline" });
    }

    fn notify_watchers(&self, user_id: &str, what: &str) {
        if let Some(watchers) = self.watchers.get(user_id) {
            let frame = frames::watchlist_event(what, &[user_id]);
            for w in watchers.iter() {
                w.send(frame.clone());
            }
        }
    }

    /// Closes every socket signed in as `user_id`, on every node; returns how many here.
    pub fn terminate_user(&self, user_id: &str) -> usize {
        if let Some(cluster) = &self.cluster {
            cluster.terminate(&self.app.read().id, user_id);
        }
        self.terminate_local_user(user_id)
    }

    /// Closes this node's sockets signed in as `user_id`.
    pub fn terminate_local_user(&self, user_id: &str) -> usize {
        self.users
            .get(user_id)
            .map(|sockets| {
                for s in sockets.iter() {
                    s.close(codes::UNAUTHORIZED);
                }
                sockets.len()
            })
            .unwrap_or(0)
    }
}
