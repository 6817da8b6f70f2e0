//! The delivery slots: how many deliveries are in flight, in all and to each receiver, and
//! how the free slots are shared out among the receivers with deliveries due.
//!
//! A receiver may hold at most `webhooks.max_in_flight_per_endpoint` slots, so one that
//! stalls (every attempt waits out the timeout) holds only those; the rest go to the
//! others. When slots are scarcer than what is due, they are handed out one at a time in
//! turn, starting with a different receiver each round. What a receiver cannot be given
//! stays in the store, unclaimed, in its order, for a later round.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prometheus::IntGaugeVec;

use super::receiver;
use crate::rights::store::Backlog;

/// Deliveries in flight, by endpoint URL. Cheap to clone.
#[derive(Clone)]
pub(super) struct InFlight {
    counts: Arc<Mutex<HashMap<String, usize>>>,
    /// `usher_webhook_in_flight{receiver}`.
    gauge: IntGaugeVec,
}

/// One delivery's slot, given back when dropped (the delivery ended, or its task panicked).
pub(super) struct Slot {
    in_flight: InFlight,
    endpoint: String,
}

impl InFlight {
    /// No delivery in flight; counted in `gauge`.
    pub(super) fn new(gauge: IntGaugeVec) -> Self {
        Self {
            counts: Arc::default(),
            gauge,
        }
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Deliveries in flight to `endpoint`.
    pub(super) fn to(&self, endpoint: &str) -> usize {
        self.counts().get(endpoint).copied().unwrap_or(0)
    }

    /// Deliveries in flight to every receiver.
    pub(super) fn total(&self) -> usize {
        self.counts().values().sum()
    }

    /// Takes a slot for a delivery to `endpoint`.
    pub(super) fn take(&self, endpoint: &str) -> Slot {
        *self.counts().entry(endpoint.to_owned()).or_insert(0) += 1;
        self.gauge.with_label_values(&[receiver(endpoint)]).inc();
        Slot {
            in_flight: self.clone(),
            endpoint: endpoint.to_owned(),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.in_flight.counts();
        if let Some(n) = counts.get_mut(&self.endpoint) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.endpoint);
            }
        }
        self.in_flight
            .gauge
            .with_label_values(&[receiver(&self.endpoint)])
            .dec();
    }
}

/// How many deliveries to claim for each receiver this round: each gets what it has due,
/// at most `cap` in flight (counting `busy`, what it has in flight already), and no more
/// than `free` slots in all, handed out one at a time in turn from the receiver at
/// `turn` (modulo their number), so none is always served last.
pub(super) fn shares(
    backlog: &[Backlog],
    busy: impl Fn(&str) -> usize,
    cap: usize,
    free: usize,
    turn: usize,
) -> Vec<(&str, u32)> {
    let mut wants: Vec<(&str, usize)> = backlog
        .iter()
        .map(|b| {
            let room = cap.saturating_sub(busy(&b.endpoint));
            (b.endpoint.as_str(), room.min(b.due as usize))
        })
        .collect();
    let mut given = vec![0u32; wants.len()];
    let mut left = free;
    let start = if wants.is_empty() {
        0
    } else {
        turn % wants.len()
    };
    while left > 0 && wants.iter().any(|(_, want)| *want > 0) {
        for i in (start..wants.len()).chain(0..start) {
            if left > 0 && wants[i].1 > 0 {
                wants[i].1 -= 1;
                given[i] += 1;
                left -= 1;
            }
        }
    }
    wants
        .iter()
        .zip(given)
        .filter(|(_, n)| *n > 0)
        .map(|((endpoint, _), n)| (*endpoint, n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{shares, InFlight};
    use crate::rights::store::Backlog;

    fn backlog(due: &[(&str, u64)]) -> Vec<Backlog> {
        due.iter()
            .map(|&(endpoint, due)| Backlog {
                endpoint: endpoint.to_owned(),
                waiting: due + 100,
                due,
            })
            .collect()
    }

    #[test]
    fn a_receiver_at_its_cap_gets_nothing_and_the_others_their_due() {
        let due = backlog(&[("http://a", 500), ("http://b", 3), ("http://c", 20)]);
        let busy = |e: &str| if e == "http://a" { 8 } else { 2 };
        assert_eq!(
            shares(&due, busy, 8, 32, 0),
            [("http://b", 3), ("http://c", 6)]
        );
    }

    #[test]
    fn scarce_slots_are_shared_in_turn_starting_elsewhere_each_round() {
        let due = backlog(&[("http://a", 500), ("http://b", 500), ("http://c", 500)]);
        let idle = |_: &str| 0;
        assert_eq!(
            shares(&due, idle, 8, 4, 0),
            [("http://a", 2), ("http://b", 1), ("http://c", 1)]
        );
        assert_eq!(
            shares(&due, idle, 8, 4, 1),
            [("http://a", 1), ("http://b", 2), ("http://c", 1)]
        );
        assert_eq!(shares(&due, idle, 8, 0, 0), []);
        assert_eq!(shares(&[], idle, 8, 32, 5), []);
    }

    #[test]
    fn a_slot_is_given_back_when_its_delivery_ends() {
        let gauge =
            prometheus::IntGaugeVec::new(prometheus::Opts::new("in_flight", "test"), &["receiver"])
                .unwrap();
        let in_flight = InFlight::new(gauge.clone());
        let first = in_flight.take("http://127.0.0.1:9/hook/s3cr3t");
        let _second = in_flight.take("http://127.0.0.1:9/hook/s3cr3t");
        let _other = in_flight.take("http://127.0.0.1:10/hook");
        assert_eq!(in_flight.to("http://127.0.0.1:9/hook/s3cr3t"), 2);
        assert_eq!(in_flight.total(), 3);
        let shown = gauge.with_label_values(&["http://127.0.0.1:9"]);
        assert_eq!(shown.get(), 2, "named by origin, never the path");
        drop(first);
        assert_eq!(in_flight.to("http://127.0.0.1:9/hook/s3cr3t"), 1);
        assert_eq!((in_flight.total(), shown.get()), (2, 1));
    }
}
