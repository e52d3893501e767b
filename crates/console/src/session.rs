//! Console sessions: an API token typed once at the login page is exchanged for a
//! random session id in a cookie (`HttpOnly`, `SameSite=Strict`, path `/ui`), so the
//! token itself never sits in the browser. Each session carries a CSRF token that
//! every form posting a change must echo. Sessions live in memory, bounded in
//! number, with an idle and an absolute lifetime; a restart logs everyone out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;

/// The session cookie's name.
pub const COOKIE: &str = "fleetbus_console";
/// Sessions kept at most; a login beyond ends the least recently used one.
pub const MAX_SESSIONS: usize = 1024;
/// A session unused this long ends.
pub const IDLE: Duration = Duration::from_secs(60 * 60);
/// No session lasts longer than this, used or not.
pub const LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);

#[derive(Debug, Clone)]
struct Session {
    csrf: String,
    /// Logged in with a read token: sees, changes nothing.
    read_only: bool,
    created: Instant,
    last_used: Instant,
}

/// The live sessions. Locked only for map operations, never across an await.
#[derive(Debug)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    rng: SystemRandom,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            map: Mutex::default(),
            rng: SystemRandom::new(),
        }
    }
}

/// What a valid session gives a handler: the token its forms must carry.
#[derive(Debug, Clone)]
pub struct Csrf(pub String);

/// Whether the session may change anything (a read token's may not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOnly(pub bool);

impl Csrf {
    /// True when `given` is this session's CSRF token (constant time).
    pub fn accepts(&self, given: &str) -> bool {
        bool::from(self.0.as_bytes().ct_eq(given.as_bytes()))
    }
}

impl Sessions {
    /// A new session at `now`: its id (for the cookie) and its CSRF token.
    pub fn create(&self, now: Instant, read_only: bool) -> Option<(String, Csrf)> {
        let id = self.random()?;
        let csrf = self.random()?;
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, s| alive(s, now));
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(
            id.clone(),
            Session {
                csrf: csrf.clone(),
                read_only,
                created: now,
                last_used: now,
            },
        );
        Some((id, Csrf(csrf)))
    }

    /// The session `id`'s CSRF token and whether it is read-only, when it is alive
    /// at `now` (and marks it used).
    pub fn check(&self, id: &str, now: Instant) -> Option<(Csrf, ReadOnly)> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let session = map.get_mut(id)?;
        if !alive(session, now) {
            map.remove(id);
            return None;
        }
        session.last_used = now;
        Some((Csrf(session.csrf.clone()), ReadOnly(session.read_only)))
    }

    /// Ends the session `id` (logout).
    pub fn remove(&self, id: &str) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    /// 32 random bytes as hex, or `None` if the system's generator failed.
    fn random(&self) -> Option<String> {
        let mut bytes = [0u8; 32];
        self.rng.fill(&mut bytes).ok()?;
        Some(hex::encode(bytes))
    }
}

fn alive(s: &Session, now: Instant) -> bool {
    now.saturating_duration_since(s.last_used) < IDLE
        && now.saturating_duration_since(s.created) < LIFETIME
}

/// The session id in a `Cookie` header, if any.
pub fn cookie_value(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
}

/// The `Set-Cookie` value that carries session `id`; `Secure` when the browser
/// reached the console over TLS (a proxy in front says so with
/// `X-Forwarded-Proto: https`), so the cookie never travels in the clear.
pub fn set_cookie(id: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={id}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}{}",
        LIFETIME.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that clears the session cookie.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_ends_when_idle_or_old() {
        let sessions = Sessions::default();
        let t0 = Instant::now();
        let (id, csrf) = sessions.create(t0, false).unwrap();
        assert_eq!(id.len(), 64);
        assert_ne!(id, csrf.0);
        let (again, read_only) = sessions.check(&id, t0 + IDLE / 2).unwrap();
        assert_eq!(read_only, ReadOnly(false));
        assert!(again.accepts(&csrf.0));
        assert!(!again.accepts("forged"));
        // Used at IDLE/2, so still alive just before IDLE/2 + IDLE.
        assert!(sessions
            .check(&id, t0 + IDLE / 2 + IDLE - Duration::from_secs(1))
            .is_some());
        assert!(sessions.check(&id, t0 + IDLE * 3).is_none());
        assert!(
            sessions.check(&id, t0).is_none(),
            "an ended session is gone"
        );

        // Kept busy, a session still ends at its lifetime.
        let (id, _) = sessions.create(t0, false).unwrap();
        let mut t = t0;
        while t < t0 + LIFETIME - IDLE {
            t += IDLE / 2;
            assert!(sessions.check(&id, t).is_some());
        }
        assert!(sessions.check(&id, t0 + LIFETIME).is_none());
    }

    #[test]
    fn sessions_are_bounded_and_logout_ends_one() {
        let sessions = Sessions::default();
        let t0 = Instant::now();
        let (first, _) = sessions.create(t0, false).unwrap();
        for i in 1..=MAX_SESSIONS {
            sessions
                .create(t0 + Duration::from_millis(i as u64), false)
                .unwrap();
        }
        assert!(sessions
            .check(&first, t0 + Duration::from_secs(1))
            .is_none());
        let (id, _) = sessions.create(t0 + Duration::from_secs(2), true).unwrap();
        let (_, read_only) = sessions.check(&id, t0 + Duration::from_secs(2)).unwrap();
        assert_eq!(read_only, ReadOnly(true));
        sessions.remove(&id);
        assert!(sessions.check(&id, t0 + Duration::from_secs(2)).is_none());
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        assert_eq!(cookie_value("a=1; fleetbus_console=abc ; b=2"), Some("abc"));
        assert_eq!(cookie_value("fleetbus_consolex=1"), None);
        assert!(set_cookie("x", false).contains("HttpOnly; SameSite=Strict"));
        assert!(!set_cookie("x", false).contains("Secure"));
        assert!(set_cookie("x", true).ends_with("; Secure"));
    }
}
