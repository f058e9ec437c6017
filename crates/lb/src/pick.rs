//! Pickers: pure functions of an [`Endpoints`] snapshot and a little picker state, so the
//! same code serves [`Balancer`](crate::Balancer) and the service proxy.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::endpoints::{Endpoint, Endpoints};

/// Round robin over the usable endpoints; lock-free, one atomic add per pick.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl RoundRobin {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn pick<'e>(&self, endpoints: &'e Endpoints) -> Option<&'e Endpoint> {
        let usable = endpoints.usable();
        if usable.is_empty() {
            return None;
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        usable.get(turn % usable.len())
    }
}

/// Power of two choices: draw two distinct endpoints at random and take the one with fewer
/// requests in flight. Nearly as good as least-loaded, without scanning or coordination.
#[derive(Debug)]
pub struct PowerOfTwoChoices {
    state: AtomicU64,
}

impl Default for PowerOfTwoChoices {
    fn default() -> Self {
        Self::with_seed(std::process::id().into())
    }
}

impl PowerOfTwoChoices {
    pub fn new() -> Self {
        Self::default()
    }

    /// A picker whose random draws repeat: for tests.
    pub fn with_seed(seed: u64) -> Self {
        PowerOfTwoChoices {
            state: AtomicU64::new(seed),
        }
    }

    /// SplitMix64 on an atomic counter: statistically fine for picking and never contended
    /// beyond one `fetch_add`.
    fn next_random(&self) -> u64 {
        let mut z = self
            .state
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Picks and counts the request as in flight until the guard drops.
    pub fn pick(&self, endpoints: &Endpoints) -> Option<InFlight> {
        let usable = endpoints.usable();
        let chosen = match usable.len() {
            0 => return None,
            1 => &usable[0],
            count => {
                let random = self.next_random();
                let first = (random % count as u64) as usize;
                // An offset in 1..count makes the second draw distinct from the first.
                let offset = 1 + ((random >> 32) % (count as u64 - 1)) as usize;
                let second = (first + offset) % count;
                if usable[second].in_flight() < usable[first].in_flight() {
                    &usable[second]
                } else {
                    &usable[first]
                }
            }
        };
        Some(InFlight::new(chosen.clone()))
    }
}

/// An endpoint counted as busy for as long as this guard lives.
#[derive(Debug)]
pub struct InFlight {
    endpoint: Endpoint,
}

impl InFlight {
    /// Counts a request on `endpoint` until the guard drops.
    pub fn new(endpoint: Endpoint) -> Self {
        endpoint.in_flight_counter().fetch_add(1, Ordering::Relaxed);
        InFlight { endpoint }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }
}

impl Deref for InFlight {
    type Target = Endpoint;
    fn deref(&self) -> &Endpoint {
        &self.endpoint
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.endpoint
            .in_flight_counter()
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// The endpoint a key maps to, by rendezvous (highest random weight) hashing: the same key
/// keeps its endpoint while that endpoint stays usable, and when endpoints come or go only
/// the keys of the endpoints concerned move.
pub fn pick_by_key<'e, K: Hash + ?Sized>(
    endpoints: &'e Endpoints,
    key: &K,
) -> Option<&'e Endpoint> {
    let key_hash = {
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        hasher.finish()
    };
    endpoints.usable().iter().max_by_key(|endpoint| {
        let mut hasher = DefaultHasher::new();
        key_hash.hash(&mut hasher);
        endpoint.address().hash(&mut hasher);
        hasher.finish()
    })
}

/// Session affinity the way kube-proxy's `sessionAffinity: ClientIP` behaves: the first
/// connection of a key picks freely; later ones within `timeout` of the previous one go to
/// the same endpoint while it stays usable. Each use restarts the timeout.
#[derive(Debug)]
pub struct AffinityTable<K> {
    timeout: Duration,
    entries: Mutex<AffinityEntries<K>>,
}

#[derive(Debug)]
struct AffinityEntries<K> {
    sticky: HashMap<K, (SocketAddr, Instant)>,
    inserts_since_purge: usize,
}

impl<K: Hash + Eq + Clone> AffinityTable<K> {
    pub fn new(timeout: Duration) -> Self {
        AffinityTable {
            timeout,
            entries: Mutex::new(AffinityEntries {
                sticky: HashMap::new(),
                inserts_since_purge: 0,
            }),
        }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The endpoint `key` sticks to, or the one `choose` picks (then remembered).
    pub fn pick(
        &self,
        key: &K,
        endpoints: &Endpoints,
        choose: impl FnOnce(&Endpoints) -> Option<Endpoint>,
    ) -> Option<Endpoint> {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((address, last_used)) = entries.sticky.get_mut(key)
            && now.duration_since(*last_used) < self.timeout
            && let Some(endpoint) = endpoints
                .usable()
                .iter()
                .find(|endpoint| endpoint.address() == *address)
        {
            *last_used = now;
            return Some(endpoint.clone());
        }
        let chosen = choose(endpoints)?;
        entries.sticky.insert(key.clone(), (chosen.address(), now));
        entries.inserts_since_purge += 1;
        // Purging in proportion to inserts keeps the table bounded by the live clients
        // without a timer.
        if entries.inserts_since_purge > entries.sticky.len().max(1024) {
            let timeout = self.timeout;
            entries
                .sticky
                .retain(|_, (_, last_used)| now.duration_since(*last_used) < timeout);
            entries.inserts_since_purge = 0;
        }
        Some(chosen)
    }

    /// Forgets where `key` sticks, so its next pick is free (after its endpoint failed).
    pub fn forget(&self, key: &K) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .sticky
            .remove(key);
    }

    /// Forgets keys stuck to endpoints that are no longer usable.
    pub fn retain_usable(&self, endpoints: &Endpoints) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .sticky
            .retain(|_, (address, _)| endpoints.is_usable(*address));
    }

    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .sticky
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn endpoints(count: u8) -> Endpoints {
        Endpoints::ready((1..=count).map(|last| SocketAddr::from(([10, 0, 0, last], 80))))
    }

    #[test]
    fn round_robin_visits_every_endpoint_in_turn() {
        let endpoints = endpoints(3);
        let picker = RoundRobin::new();
        let picks: Vec<u8> = (0..6)
            .map(|_| match picker.pick(&endpoints).unwrap().address().ip() {
                std::net::IpAddr::V4(ip) => ip.octets()[3],
                std::net::IpAddr::V6(_) => unreachable!(),
            })
            .collect();
        assert_eq!(picks, [1, 2, 3, 1, 2, 3]);
        assert!(picker.pick(&Endpoints::default()).is_none());
    }

    #[test]
    fn power_of_two_choices_avoids_the_busy_endpoint() {
        let endpoints = endpoints(2);
        let picker = PowerOfTwoChoices::with_seed(7);
        let busy = picker.pick(&endpoints).unwrap();
        // With two endpoints both are always drawn, so the idle one must win every time.
        for _ in 0..20 {
            let next = picker.pick(&endpoints).unwrap();
            assert_ne!(next.address(), busy.address());
        }
        let busy_address = busy.address();
        drop(busy);
        assert_eq!(
            endpoints
                .usable()
                .iter()
                .find(|e| e.address() == busy_address)
                .unwrap()
                .in_flight(),
            0
        );
    }

    #[test]
    fn power_of_two_choices_spreads_held_requests_evenly() {
        let endpoints = endpoints(4);
        let picker = PowerOfTwoChoices::with_seed(1);
        let held: Vec<InFlight> = (0..400).map(|_| picker.pick(&endpoints).unwrap()).collect();
        let loads: Vec<usize> = endpoints.usable().iter().map(Endpoint::in_flight).collect();
        assert_eq!(loads.iter().sum::<usize>(), 400);
        assert!(
            loads.iter().all(|load| (90..=110).contains(load)),
            "{loads:?}"
        );
        drop(held);
        assert!(endpoints.usable().iter().all(|e| e.in_flight() == 0));
    }

    #[test]
    fn keys_stick_and_move_only_with_their_endpoint() {
        let four = endpoints(4);
        let keys: Vec<String> = (0..200).map(|n| format!("client-{n}")).collect();
        let before: Vec<SocketAddr> = keys
            .iter()
            .map(|key| pick_by_key(&four, key).unwrap().address())
            .collect();
        assert_eq!(before.iter().collect::<HashSet<_>>().len(), 4);
        let removed = SocketAddr::from(([10, 0, 0, 2], 80));
        let three = Endpoints::ready(
            four.usable()
                .iter()
                .map(Endpoint::address)
                .filter(|a| *a != removed),
        );
        for (key, old) in keys.iter().zip(&before) {
            let new = pick_by_key(&three, key).unwrap().address();
            if *old != removed {
                assert_eq!(new, *old, "{key} moved although its endpoint stayed");
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn affinity_sticks_until_the_timeout_or_the_endpoint_goes() {
        let endpoints = endpoints(3);
        let table = AffinityTable::new(Duration::from_secs(10));
        let round_robin = RoundRobin::new();
        let choose = |endpoints: &Endpoints| round_robin.pick(endpoints).cloned();
        let client = "192.0.2.1";
        let first = table.pick(&client, &endpoints, choose).unwrap().address();
        for _ in 0..5 {
            tokio::time::advance(Duration::from_secs(9)).await;
            assert_eq!(
                table.pick(&client, &endpoints, choose).unwrap().address(),
                first
            );
        }
        tokio::time::advance(Duration::from_secs(11)).await;
        let after_timeout = table.pick(&client, &endpoints, choose).unwrap().address();
        assert_ne!(after_timeout, first);

        let without = Endpoints::ready(
            endpoints
                .usable()
                .iter()
                .map(Endpoint::address)
                .filter(|a| *a != after_timeout),
        );
        let moved = table.pick(&client, &without, choose).unwrap().address();
        assert_ne!(moved, after_timeout);
        table.retain_usable(&Endpoints::default());
        assert!(table.is_empty());
    }
}
