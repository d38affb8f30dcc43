//! The bounded in-memory state of authentication: remembered credentials,
//! the failed-login throttle and a small map cache. Every structure has a
//! fixed maximum size, so a flood of distinct users, addresses or runs costs
//! bounded memory.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Caller;

/// Verified credentials (keyed by a keyed digest, never the secret itself),
/// each remembered for the TTL, so a correct password is hashed once per TTL.
pub(crate) struct CredentialCache {
    ttl: Duration,
    max: usize,
    entries: Mutex<HashMap<[u8; 32], (Caller, Instant)>>,
}

impl CredentialCache {
    pub fn new(ttl: Duration, max: usize) -> CredentialCache {
        CredentialCache {
            ttl,
            max,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn get(&self, key: &[u8; 32]) -> Option<Caller> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.entries.lock().ok()?;
        let (caller, at) = entries.get(key)?;
        (at.elapsed() < self.ttl).then(|| caller.clone())
    }

    pub fn put(&self, key: [u8; 32], caller: Caller) {
        if self.ttl.is_zero() || self.max == 0 {
            return;
        }
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= self.max {
                let ttl = self.ttl;
                entries.retain(|_, (_, at)| at.elapsed() < ttl);
                if entries.len() >= self.max {
                    entries.clear();
                }
            }
            entries.insert(key, (caller, Instant::now()));
        }
    }

    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }
}

/// Failures allowed before attempts are slowed.
const FREE_FAILURES: u32 = 5;
/// The longest wait between attempts once slowed.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// A key with no failure for this long is forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Keys remembered at most.
const MAX_KEYS: usize = 10_000;
/// Failures from one address across all user names before that address is slowed.
const FREE_ADDRESS_FAILURES: u32 = 50;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ThrottleKey {
    /// One user name from one address.
    Pair(Option<IpAddr>, String),
    /// One address, every user name.
    Address(IpAddr),
}

struct Failures {
    count: u32,
    last: Instant,
}

/// Slows repeated failed logins: after [`FREE_FAILURES`] failures for a user
/// name from one address (or [`FREE_ADDRESS_FAILURES`] from one address
/// across names), the next attempt must wait 1 s, then 2 s, 4 s … up to
/// [`MAX_WAIT`]; an early attempt is answered 429 without checking the
/// password. Keyed by address as well as name, so an attacker elsewhere
/// cannot lock a user out.
pub(crate) struct Throttle {
    keys: Mutex<HashMap<ThrottleKey, Failures>>,
}

fn wait_for(failures: &Failures, free: u32) -> Option<Duration> {
    if failures.count < free {
        return None;
    }
    let exponent = (failures.count - free).min(6);
    let wait = Duration::from_secs(1u64 << exponent).min(MAX_WAIT);
    let elapsed = failures.last.elapsed();
    (elapsed < wait).then(|| wait - elapsed)
}

impl Throttle {
    pub fn new() -> Throttle {
        Throttle {
            keys: Mutex::new(HashMap::new()),
        }
    }

    fn keys(address: Option<IpAddr>, username: &str) -> Vec<(ThrottleKey, u32)> {
        let mut keys = vec![(
            ThrottleKey::Pair(address, username.to_string()),
            FREE_FAILURES,
        )];
        if let Some(ip) = address {
            keys.push((ThrottleKey::Address(ip), FREE_ADDRESS_FAILURES));
        }
        keys
    }

    /// How long this user from this address must still wait, if at all.
    pub fn wait(&self, address: Option<IpAddr>, username: &str) -> Option<Duration> {
        let keys = self.keys.lock().ok()?;
        Self::keys(address, username)
            .iter()
            .filter_map(|(key, free)| wait_for(keys.get(key)?, *free))
            .max()
    }

    pub fn failed(&self, address: Option<IpAddr>, username: &str) {
        let Ok(mut keys) = self.keys.lock() else {
            return;
        };
        if keys.len() + 2 > MAX_KEYS {
            keys.retain(|_, f| f.last.elapsed() < FORGET_AFTER);
            while keys.len() + 2 > MAX_KEYS {
                let Some(oldest) = keys
                    .iter()
                    .min_by_key(|(_, f)| f.last)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                keys.remove(&oldest);
            }
        }
        for (key, _) in Self::keys(address, username) {
            let entry = keys.entry(key).or_insert(Failures {
                count: 0,
                last: Instant::now(),
            });
            if entry.last.elapsed() >= FORGET_AFTER {
                entry.count = 0;
            }
            entry.count = entry.count.saturating_add(1);
            entry.last = Instant::now();
        }
    }

    pub fn succeeded(&self, address: Option<IpAddr>, username: &str) {
        if let Ok(mut keys) = self.keys.lock() {
            keys.remove(&ThrottleKey::Pair(address, username.to_string()));
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.keys.lock().map(|k| k.len()).unwrap_or(0)
    }
}

/// A map that forgets everything when it reaches its size: for caching
/// facts that never change (a run's experiment).
pub(crate) struct BoundedMap<K, V> {
    max: usize,
    entries: Mutex<HashMap<K, V>>,
}

impl<K: Eq + Hash, V: Clone> BoundedMap<K, V> {
    pub fn new(max: usize) -> Self {
        BoundedMap {
            max,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        self.entries.lock().ok()?.get(key).cloned()
    }

    pub fn put(&self, key: K, value: V) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= self.max {
                entries.clear();
            }
            entries.insert(key, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_slows_after_free_failures_per_pair() {
        let throttle = Throttle::new();
        let here: IpAddr = [10, 0, 0, 1].into();
        let there: IpAddr = [10, 0, 0, 2].into();
        for _ in 0..FREE_FAILURES {
            assert_eq!(throttle.wait(Some(here), "alice"), None);
            throttle.failed(Some(here), "alice");
        }
        assert!(throttle.wait(Some(here), "alice").is_some());
        // Another address, or another user, is not slowed by these failures.
        assert_eq!(throttle.wait(Some(there), "alice"), None);
        assert_eq!(throttle.wait(Some(here), "bob"), None);
        throttle.succeeded(Some(here), "alice");
        assert_eq!(throttle.wait(Some(here), "alice"), None);
    }

    #[test]
    fn throttle_memory_is_bounded() {
        let throttle = Throttle::new();
        for i in 0..(MAX_KEYS as u32 + 500) {
            let ip: IpAddr = std::net::Ipv4Addr::from(i).into();
            throttle.failed(Some(ip), "x");
        }
        assert!(throttle.len() <= MAX_KEYS);
    }

    #[test]
    fn credential_cache_expires_and_is_bounded() {
        let cache = CredentialCache::new(Duration::from_secs(60), 2);
        cache.put([1; 32], Caller::anonymous());
        cache.put([2; 32], Caller::anonymous());
        cache.put([3; 32], Caller::anonymous());
        assert!(cache.get(&[3; 32]).is_some());
        assert!(cache.entries.lock().unwrap().len() <= 2);
        let off = CredentialCache::new(Duration::ZERO, 10);
        off.put([1; 32], Caller::anonymous());
        assert!(off.get(&[1; 32]).is_none());
    }
}
