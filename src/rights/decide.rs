//! The rights decision, pure: an account's purchases of the products that cover one piece
//! of content, a device class and an instant in; an entitlement or the reason out.

use super::model::{DeviceClass, HoursFrom, Product, Purchase, PurchaseStatus, Status};

/// Why the holder of a valid credential may not watch this content now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RightsDenied {
    /// No purchase of any product that covers the content (or the path is not sold).
    #[error("no purchase covers this content")]
    NoRights,
    /// The right starts later.
    #[error("rights start at {at}")]
    NotStarted {
        /// When they start.
        at: u64,
    },
    /// The right has ended.
    #[error("rights ended at {at}")]
    Expired {
        /// When they ended.
        at: u64,
    },
    /// The product is switched off.
    #[error("product is inactive")]
    ProductInactive,
    /// The account is disabled.
    #[error("account is disabled")]
    AccountDisabled,
    /// The purchase was revoked.
    #[error("purchase was revoked")]
    Revoked,
    /// The product may not be played on this kind of device.
    #[error("not sold for this device class")]
    DeviceClass,
    /// The rights source could not answer (external source down, fail closed).
    #[error("rights source unavailable")]
    Unavailable,
}

impl RightsDenied {
    /// The machine-readable reason.
    pub fn reason(&self) -> &'static str {
        match self {
            RightsDenied::NoRights => "no_rights",
            RightsDenied::NotStarted { .. } => "rights_not_started",
            RightsDenied::Expired { .. } => "rights_expired",
            RightsDenied::ProductInactive => "product_inactive",
            RightsDenied::AccountDisabled => "account_disabled",
            RightsDenied::Revoked => "revoked",
            RightsDenied::DeviceClass => "device_class",
            RightsDenied::Unavailable => "rights_unavailable",
        }
    }

    /// Ranks refusals when several purchases refuse: the one closest to a yes wins, so the
    /// viewer hears "not started yet" rather than "revoked" for an older purchase.
    fn rank(&self) -> u8 {
        match self {
            RightsDenied::NotStarted { .. } => 7,
            RightsDenied::Expired { .. } => 6,
            RightsDenied::DeviceClass => 5,
            RightsDenied::ProductInactive => 4,
            RightsDenied::Revoked => 3,
            RightsDenied::AccountDisabled => 2,
            RightsDenied::Unavailable => 1,
            RightsDenied::NoRights => 0,
        }
    }

    /// Until when this refusal stays true by the clock alone (`None`: until something is
    /// written). A refusal for "not started" ends when the right starts.
    pub fn holds_until(&self) -> Option<u64> {
        match self {
            RightsDenied::NotStarted { at } => Some(*at),
            _ => None,
        }
    }
}

/// A positive decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entitled {
    /// The purchase that grants it (shared: cached decisions are cloned on every hit).
    pub purchase: std::sync::Arc<str>,
    /// When it ends (`None`: no end).
    pub until: Option<u64>,
    /// The purchase counts hours from first play and has not been played yet: the caller
    /// records `now` as its first play, which ends it at [`FirstPlay::ends`] (`until`
    /// counts the hours from when this decision was made, which may be earlier: a cached
    /// decision names the rentals a request may fall back to).
    pub first_play: Option<FirstPlay>,
    /// The product bought.
    pub product: std::sync::Arc<str>,
    /// Distinct devices that may ever activate the purchase (`None`: no limit).
    pub activations: Option<u32>,
    /// Whether a lost session may be resumed from the same network.
    pub ip_recovery: bool,
    /// Concurrent-stream limits for a session under this purchase.
    pub limits: crate::sessions::Limits,
    /// The account's other purchases that grant it too, in the order they are preferred
    /// after this one (see [`decide`]): a ticket's request that this purchase cannot
    /// admit on its device (its activations or streams are used) starts under the first
    /// of them that can. `None` for the common single purchase.
    pub others: Option<std::sync::Arc<[Entitled]>>,
}

/// What the first play of an hours-from-first-play rental starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirstPlay {
    /// Its hours, in seconds.
    pub seconds: u64,
    /// The end its window has whatever the first play (`None`: none).
    pub bound: Option<u64>,
}

impl FirstPlay {
    /// When the rental ends if first played at `now`: its hours from then, or its bound
    /// if sooner.
    pub fn ends(&self, now: u64) -> u64 {
        let from_now = now.saturating_add(self.seconds);
        self.bound.map_or(from_now, |bound| bound.min(from_now))
    }
}

impl Entitled {
    /// Whether this yes still holds at `now` by the clock alone: no right it names (its
    /// own, nor the [`Entitled::others`] a request may fall back to) has ended, and no
    /// first play is waiting to be recorded (that answer is used once).
    pub fn holds_at(&self, now: u64) -> bool {
        self.first_play.is_none()
            && self
                .in_order()
                .all(|e| e.until.is_none_or(|until| now < until))
    }

    /// An entitlement from a source that knows no purchases or limits (the external one).
    pub fn unlimited(purchase: &str, until: Option<u64>) -> Self {
        Self {
            purchase: purchase.into(),
            until,
            first_play: None,
            product: "".into(),
            activations: None,
            ip_recovery: false,
            limits: crate::sessions::Limits::default(),
            others: None,
        }
    }

    /// This purchase, then the others that grant it, in order of preference.
    pub fn in_order(&self) -> impl Iterator<Item = &Entitled> {
        std::iter::once(self).chain(self.others.iter().flat_map(|others| others.iter()))
    }
}

/// The window `[start, end)` of a purchase of a product; `end` is `None` when nothing
/// bounds it (yet: an hours-from-first-play purchase not yet played).
///
/// A purchase's own `access_expire` is the operator's word for that buyer: it replaces
/// every end the product gives (its `access_expire`, `period` and `hours`), so extending
/// a purchase extends it. Only the product's `available_until` still bounds it (the
/// product plays nowhere after it; an extension past it is refused, see
/// [`extension_fits`]).
pub fn window(purchase: &Purchase, product: &Product) -> (u64, Option<u64>) {
    let mut start = purchase
        .access_start
        .or(product.access_start)
        .unwrap_or(purchase.purchased_at);
    if let Some(from) = product.available_from {
        start = start.max(from);
    }
    let own = match purchase.access_expire {
        Some(expire) => Some(expire),
        None => product_end(purchase, product),
    };
    let end = [own, product.available_until].into_iter().flatten().min();
    (start, end)
}

/// Whether the product counts `hours` for this purchase (not overridden by the
/// purchase's own end).
fn counts_hours(purchase: &Purchase, product: &Product) -> bool {
    product.hours.is_some() && purchase.access_expire.is_none()
}

/// The end the product's rules give a purchase: the earliest of its `access_expire`,
/// purchase + `period` days and purchase (or first play) + `hours`.
fn product_end(purchase: &Purchase, product: &Product) -> Option<u64> {
    let hours_end = product.hours.and_then(|hours| {
        let base = match product.hours_from {
            HoursFrom::Purchase => Some(purchase.purchased_at),
            HoursFrom::FirstPlay => purchase.first_play_at,
        };
        base.map(|b| b + u64::from(hours) * 3600)
    });
    [
        product.access_expire,
        product
            .period_days
            .map(|days| purchase.purchased_at + u64::from(days) * 86_400),
        hours_end,
    ]
    .into_iter()
    .flatten()
    .min()
}

/// Why a product may not be sold now. Pre-selling (a window that starts later, an
/// `available_from` in the future) is allowed: live events are sold ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotSellable {
    /// The product is switched off.
    #[error("the product is inactive")]
    ProductInactive,
    /// The product's `available_until` has passed.
    #[error("the product is no longer available (available_until has passed)")]
    ProductUnavailable,
    /// The rights window a sale made now would get has already ended (the product's
    /// `access_expire`, or the buyer's, lies in the past).
    #[error("the access window of this sale has already ended")]
    WindowEnded,
}

impl NotSellable {
    /// The machine-readable reason.
    pub fn reason(self) -> &'static str {
        match self {
            NotSellable::ProductInactive => "product_inactive",
            NotSellable::ProductUnavailable => "product_unavailable",
            NotSellable::WindowEnded => "window_ended",
        }
    }
}

/// Whether `purchase` (a sale being made at `now`) of `product` could ever play: the one
/// check every way of selling goes through.
///
/// # Errors
/// The reason it could not.
pub fn sellable(purchase: &Purchase, product: &Product, now: u64) -> Result<(), NotSellable> {
    if product.status == Status::Inactive {
        return Err(NotSellable::ProductInactive);
    }
    if product.available_until.is_some_and(|until| now >= until) {
        return Err(NotSellable::ProductUnavailable);
    }
    let (start, end) = window(purchase, product);
    if end.is_some_and(|end| now >= end || end <= start) {
        return Err(NotSellable::WindowEnded);
    }
    Ok(())
}

/// Whether a purchase's own `access_expire` lies within what the product allows: not
/// after its `available_until`, so an extension never answers success without effect.
///
/// # Errors
/// The product's `available_until`, when the purchase's end lies past it.
pub fn extension_fits(purchase: &Purchase, product: &Product) -> Result<(), u64> {
    match (purchase.access_expire, product.available_until) {
        (Some(expire), Some(until)) if expire > until => Err(until),
        _ => Ok(()),
    }
}

/// Decides whether an account holding `candidates` (purchases with their products, all
/// covering the content) may watch it on a `class` device at `now`.
///
/// When several purchases grant, one that starts no rental's hours comes first: an
/// unplayed hours-from-first-play rental, bought for later, keeps its hours while another
/// purchase covers the content. Among those alike, the one that reaches furthest comes
/// first. The others come along in [`Entitled::others`], in the same order.
///
/// # Errors
/// The refusal closest to a yes when no purchase grants.
pub fn decide(
    account_enabled: bool,
    candidates: &[(Purchase, Product)],
    class: DeviceClass,
    now: u64,
) -> Result<Entitled, RightsDenied> {
    if !account_enabled {
        return Err(RightsDenied::AccountDisabled);
    }
    let mut granting = Vec::new();
    let mut refusal = RightsDenied::NoRights;
    for (purchase, product) in candidates {
        match decide_one(purchase, product, class, now) {
            Ok(entitled) => granting.push(entitled),
            Err(why) => {
                let closer = why.rank() > refusal.rank()
                    || matches!((&why, &refusal), (RightsDenied::NotStarted { at: a }, RightsDenied::NotStarted { at: b }) if a < b);
                if closer {
                    refusal = why;
                }
            }
        }
    }
    // Stable: of two alike, the store's order (the older purchase first) decides.
    granting.sort_by_key(|e| {
        let waits = e.first_play.is_some();
        (waits, std::cmp::Reverse(e.until.unwrap_or(u64::MAX)))
    });
    let mut granting = granting.into_iter();
    let mut best = granting.next().ok_or(refusal)?;
    let others: Vec<Entitled> = granting.collect();
    best.others = (!others.is_empty()).then(|| others.into());
    Ok(best)
}

fn decide_one(
    purchase: &Purchase,
    product: &Product,
    class: DeviceClass,
    now: u64,
) -> Result<Entitled, RightsDenied> {
    if purchase.status == PurchaseStatus::Revoked {
        return Err(RightsDenied::Revoked);
    }
    if product.status == Status::Inactive {
        return Err(RightsDenied::ProductInactive);
    }
    if !product.device_classes.is_empty() && !product.device_classes.contains(&class) {
        return Err(RightsDenied::DeviceClass);
    }
    let (start, end) = window(purchase, product);
    if now < start {
        return Err(RightsDenied::NotStarted { at: start });
    }
    if let Some(end) = end.filter(|&end| now >= end) {
        return Err(RightsDenied::Expired { at: end });
    }
    let first_play = (counts_hours(purchase, product)
        && product.hours_from == HoursFrom::FirstPlay
        && purchase.first_play_at.is_none())
    .then(|| FirstPlay {
        seconds: u64::from(product.hours.unwrap_or(0)) * 3600,
        bound: end,
    });
    // Recording the first play fixes the end; until then this decision is good for the
    // hours counted from now.
    let until = match first_play {
        Some(first_play) => Some(first_play.ends(now)),
        None => end,
    };
    Ok(Entitled {
        purchase: purchase.hash.as_str().into(),
        until,
        first_play,
        product: product.code.as_str().into(),
        activations: purchase.activations.or(product.activations),
        ip_recovery: product.ip_recovery,
        limits: crate::sessions::Limits {
            product_sessions: product.max_sessions,
            product_devices: product.max_devices,
            account_sessions: None,
            account_devices: None,
            policy: product.concurrency_policy,
        },
        others: None,
    })
}

#[cfg(test)]
mod tests;
