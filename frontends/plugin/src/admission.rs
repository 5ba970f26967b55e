//! Admission of new connections, shared by every frontend's accept loop: a bound on the
//! sockets open at once, on those from one address, and on how fast one address may open
//! them (a token bucket per address). Decided before a byte is read, so a flood of
//! connections costs an accepted-then-closed socket each, nothing more.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// Connection bounds of one listener family (one frontend). Zero means no bound.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionLimits {
    /// Sockets open at once, whatever their state.
    pub max_sockets: usize,
    /// Sockets open at once from one IP address.
    pub max_per_ip: usize,
    /// New connections per second from one IP address (sustained).
    pub rate_per_ip: f64,
    /// New connections one IP address may open in a burst above the sustained rate.
    pub burst_per_ip: f64,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_sockets: 0,
            max_per_ip: 0,
            rate_per_ip: 0.0,
            burst_per_ip: 0.0,
        }
    }
}

/// Why a connection was refused; also its metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_sockets` reached.
    MaxSockets,
    /// `max_per_ip` reached for the address.
    MaxPerIp,
    /// The address opens connections faster than `rate_per_ip` (after its burst).
    Rate,
}

impl Refusal {
    /// The label counted in metrics.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::MaxSockets => "max_connections",
            Refusal::MaxPerIp => "max_connections_per_ip",
            Refusal::Rate => "connection_rate",
        }
    }
}

#[derive(Debug, Default)]
struct State {
    open: usize,
    per_ip: HashMap<IpAddr, usize>,
    /// Token buckets: tokens left and when they were counted.
    buckets: HashMap<IpAddr, (f64, Instant)>,
    last_prune: Option<Instant>,
}

/// Admits connections within [`ConnectionLimits`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ConnectionGate {
    limits: ConnectionLimits,
    state: Arc<Mutex<State>>,
}

/// An admitted connection: holds its place until dropped.
#[derive(Debug)]
pub struct Admitted {
    ip: Option<IpAddr>,
    state: Arc<Mutex<State>>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut st = self.state.lock();
        st.open = st.open.saturating_sub(1);
        if let Some(ip) = self.ip
            && let Some(n) = st.per_ip.get_mut(&ip)
        {
            *n -= 1;
            if *n == 0 {
                st.per_ip.remove(&ip);
            }
        }
    }
}

impl ConnectionLimits {
    /// Limits from a frontend's settings; a burst of 0 means the rate itself.
    pub fn new(max_sockets: usize, max_per_ip: usize, rate_per_ip: f64, burst_per_ip: f64) -> Self {
        ConnectionLimits {
            max_sockets,
            max_per_ip,
            rate_per_ip,
            burst_per_ip: if burst_per_ip > 0.0 {
                burst_per_ip
            } else {
                rate_per_ip
            },
        }
    }
}

impl ConnectionGate {
    /// Admits a connection from `addr` unless its address is banned or a bound refuses
    /// it; `refused` is told why (`banned` or the bound's label).
    pub fn admit_unbanned(
        &self,
        security: &crate::security::Security,
        addr: std::net::SocketAddr,
        refused: impl FnOnce(&'static str),
    ) -> Option<Admitted> {
        let ip = addr.ip().to_canonical();
        if security.ip_banned(ip) {
            refused("banned");
            return None;
        }
        match self.admit(Some(ip), Instant::now()) {
            Ok(admitted) => Some(admitted),
            Err(refusal) => {
                refused(refusal.label());
                None
            }
        }
    }

    /// A gate with these limits.
    pub fn new(limits: ConnectionLimits) -> Self {
        ConnectionGate {
            limits,
            state: Arc::new(Mutex::new(State::default())),
        }
    }

    /// Admits a connection from `ip` (None: a transport without addresses) at `now`.
    pub fn admit(&self, ip: Option<IpAddr>, now: Instant) -> Result<Admitted, Refusal> {
        let l = &self.limits;
        let mut st = self.state.lock();
        if l.max_sockets > 0 && st.open >= l.max_sockets {
            return Err(Refusal::MaxSockets);
        }
        if let Some(ip) = ip {
            if l.max_per_ip > 0 && st.per_ip.get(&ip).copied().unwrap_or(0) >= l.max_per_ip {
                return Err(Refusal::MaxPerIp);
            }
            if l.rate_per_ip > 0.0 {
                prune_buckets(&mut st, l, now);
                let burst = l.burst_per_ip.max(1.0);
                let (tokens, at) = st.buckets.entry(ip).or_insert((burst, now));
                let refill = now.saturating_duration_since(*at).as_secs_f64() * l.rate_per_ip;
                *tokens = (*tokens + refill).min(burst);
                *at = now;
                if *tokens < 1.0 {
                    return Err(Refusal::Rate);
                }
                *tokens -= 1.0;
            }
            *st.per_ip.entry(ip).or_insert(0) += 1;
        }
        st.open += 1;
        Ok(Admitted {
            ip,
            state: self.state.clone(),
        })
    }
}

/// Forgets buckets that have refilled completely (they are the same as no bucket), at most
/// once a second: the map holds only addresses seen within the last refill period.
fn prune_buckets(st: &mut State, l: &ConnectionLimits, now: Instant) {
    if st
        .last_prune
        .is_some_and(|t| now.saturating_duration_since(t).as_secs() < 1)
    {
        return;
    }
    st.last_prune = Some(now);
    let burst = l.burst_per_ip.max(1.0);
    st.buckets.retain(|_, (tokens, at)| {
        *tokens + now.saturating_duration_since(*at).as_secs_f64() * l.rate_per_ip < burst
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;

    fn ip(n: u8) -> Option<IpAddr> {
        Some(IpAddr::from([127, 0, 0, n]))
    }

    #[test]
    fn sockets_are_bounded_and_released_on_drop() {
        let gate = ConnectionGate::new(ConnectionLimits {
            max_sockets: 2,
            ..Default::default()
        });
        let now = Instant::now();
        let a = gate.admit(ip(1), now).unwrap();
        let _b = gate.admit(ip(2), now).unwrap();
        assert_eq!(gate.admit(ip(3), now).unwrap_err(), Refusal::MaxSockets);
        drop(a);
        assert!(gate.admit(ip(3), now).is_ok());
    }

    #[test]
    fn one_address_is_bounded_others_are_not() {
        let gate = ConnectionGate::new(ConnectionLimits {
            max_per_ip: 1,
            ..Default::default()
        });
        let now = Instant::now();
        let a = gate.admit(ip(1), now).unwrap();
        assert_eq!(gate.admit(ip(1), now).unwrap_err(), Refusal::MaxPerIp);
        let _b = gate.admit(ip(2), now).unwrap();
        drop(a);
        let _c = gate.admit(ip(1), now).unwrap();
        assert_eq!(gate.state.lock().per_ip.len(), 2);
    }

    #[test]
    fn the_rate_allows_a_burst_then_the_sustained_rate() {
        let gate = ConnectionGate::new(ConnectionLimits {
            rate_per_ip: 10.0,
            burst_per_ip: 3.0,
            ..Default::default()
        });
        let t0 = Instant::now();
        let held: Vec<_> = (0..3).map(|_| gate.admit(ip(1), t0).unwrap()).collect();
        assert_eq!(gate.admit(ip(1), t0).unwrap_err(), Refusal::Rate);
        assert!(
            gate.admit(ip(2), t0).is_ok(),
            "another address has its own bucket"
        );
        // 100 ms later one token came back.
        let t1 = t0 + Duration::from_millis(100);
        assert!(gate.admit(ip(1), t1).is_ok());
        assert_eq!(gate.admit(ip(1), t1).unwrap_err(), Refusal::Rate);
        drop(held);
        // Refilled buckets are forgotten.
        let later = t1 + Duration::from_secs(5);
        gate.admit(ip(9), later).unwrap();
        assert_eq!(gate.state.lock().buckets.len(), 1);
    }
}
