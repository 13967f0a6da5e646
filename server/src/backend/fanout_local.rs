//! The in-process fan-out of the embedded default: a map from users to their live sessions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use chatwire_protocol::v1;

use super::fanout::{Delivery, Fanout, SessionKey, SessionLink};
use crate::chat::ids::{RoomId, UserId};

/// In-process fan-out.
#[derive(Debug, Default)]
pub struct LocalFanout {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    sessions: HashMap<SessionKey, (UserId, SessionLink)>,
    by_user: HashMap<UserId, Vec<SessionKey>>,
}

impl LocalFanout {
    /// An empty fan-out.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters more than losing deliveries, so a poisoned lock is taken over.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn links_of(inner: &Inner, user: &UserId) -> Vec<(SessionKey, SessionLink)> {
        inner
            .by_user
            .get(user)
            .into_iter()
            .flatten()
            .filter_map(|key| {
                inner
                    .sessions
                    .get(key)
                    .map(|(_, link)| (*key, link.clone()))
            })
            .collect()
    }
}

impl Fanout for LocalFanout {
    fn attach(&self, session: SessionKey, user: &UserId, link: SessionLink) {
        let mut inner = self.lock();
        inner.sessions.insert(session, (user.clone(), link));
        inner.by_user.entry(user.clone()).or_default().push(session);
    }

    fn detach(&self, session: SessionKey) {
        let mut inner = self.lock();
        if let Some((user, _)) = inner.sessions.remove(&session)
            && let Some(keys) = inner.by_user.get_mut(&user)
        {
            keys.retain(|key| *key != session);
            if keys.is_empty() {
                inner.by_user.remove(&user);
            }
        }
    }

    fn publish_room(&self, _room: &RoomId, events: Arc<[v1::RoomEvent]>, audience: &[UserId]) {
        let links: Vec<SessionLink> = {
            let inner = self.lock();
            audience
                .iter()
                .flat_map(|user| Self::links_of(&inner, user))
                .map(|(_, link)| link)
                .collect()
        };
        for link in links {
            link.deliver(Delivery::Room(Arc::clone(&events)));
        }
    }

    fn publish_user(&self, user: &UserId, event: v1::Event, except: Option<SessionKey>) {
        let links = Self::links_of(&self.lock(), user);
        let event = Arc::new(event);
        for (key, link) in links {
            if Some(key) != except {
                link.deliver(Delivery::User(Arc::clone(&event)));
            }
        }
    }

    fn publish_session(&self, session: SessionKey, event: v1::Event) -> bool {
        let link = self
            .lock()
            .sessions
            .get(&session)
            .map(|(_, link)| link.clone());
        link.is_some_and(|link| link.deliver(Delivery::User(Arc::new(event))))
    }

    fn sessions_of(&self, user: &UserId) -> Vec<SessionKey> {
        self.lock().by_user.get(user).cloned().unwrap_or_default()
    }

    fn close_sessions(&self, user: Option<&UserId>, code: v1::CloseCode) -> usize {
        let links: Vec<SessionLink> = {
            let inner = self.lock();
            match user {
                Some(user) => Self::links_of(&inner, user)
                    .into_iter()
                    .map(|(_, link)| link)
                    .collect(),
                None => inner
                    .sessions
                    .values()
                    .map(|(_, link)| link.clone())
                    .collect(),
            }
        };
        for link in &links {
            link.deliver(Delivery::Close(code));
        }
        links.len()
    }

    fn session_count(&self) -> usize {
        self.lock().sessions.len()
    }
}
