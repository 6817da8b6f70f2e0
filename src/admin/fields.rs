//! Input fields, as both the JSON API and the PPV facade send them, checked into the rights
//! model. One parser for both, so a value means the same whichever door it came through;
//! every problem names its field.

use std::collections::HashMap;

use crate::rights::date::Edge;
use crate::rights::model::{
    DeviceClass, HoursFrom, Media, Product, ProductType, Purchase, PurchaseStatus, Status,
};

mod values;
use values::{cost, time};
pub use values::{LATEST, MAX_COST};

/// A bad field (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Invalid {
    /// The field name as the caller sent it.
    pub field: String,
    /// What is wrong and what is expected.
    pub reason: String,
}

/// `Err(Invalid)` for `field`.
pub fn invalid<T>(field: &str, reason: impl Into<String>) -> Result<T, Invalid> {
    Err(Invalid {
        field: field.to_owned(),
        reason: reason.into(),
    })
}

/// Field name → text value. JSON numbers and booleans arrive as their text; arrays as
/// comma-separated text; `null` as [`NULL`].
pub type Fields = HashMap<String, String>;

/// The field an `Idempotency-Key` header is passed on in (the header's own name, so a
/// problem with it names it).
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// What a JSON `null` becomes in [`Fields`]: absent for text fields (no change), "no
/// limit" for limits (see [`Reader::limit`]). A form cannot send it; forms write `null`.
pub const NULL: &str = "\0";

/// Refuses a control character other than tab, line feed and carriage return (NUL
/// included) in any name or value of `fields`: no code, name or address needs one,
/// PostgreSQL cannot store a NUL, and XML cannot hold the others.
///
/// # Errors
/// The first field holding one.
pub fn plain_text(fields: &Fields) -> Result<(), Invalid> {
    fields
        .iter()
        .try_for_each(|(name, value)| plain(name, name).and_then(|()| plain(name, value)))
}

fn plain(field: &str, text: &str) -> Result<(), Invalid> {
    match text
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        Some(c) => invalid(
            field,
            format!("holds the control character U+{:04X}", u32::from(c)),
        ),
        None => Ok(()),
    }
}

/// Turns a JSON object into [`Fields`].
///
/// # Errors
/// When the body is not a JSON object of scalars (or arrays of strings).
pub fn from_json(value: &serde_json::Value) -> Result<Fields, Invalid> {
    let Some(object) = value.as_object() else {
        return invalid("body", "expected a JSON object");
    };
    let mut fields = Fields::new();
    for (key, value) in object {
        plain(key, key)?;
        let text = match value {
            serde_json::Value::Null => NULL.to_owned(),
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Bool(b) => b.to_string(),
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().map(str::to_owned).ok_or(()))
                .collect::<Result<Vec<_>, ()>>()
                .map_err(|()| Invalid {
                    field: key.clone(),
                    reason: "expected an array of strings".into(),
                })?
                .join(","),
            serde_json::Value::Object(_) => return invalid(key, "expected a value, not an object"),
        };
        if !value.is_null() {
            // A string "\u0000" would otherwise read as JSON null (`NULL`).
            plain(key, &text)?;
        }
        fields.insert(key.clone(), text);
    }
    Ok(fields)
}

/// Reads typed values out of [`Fields`], remembering which were known, so leftovers can be
/// reported as unknown.
pub struct Reader<'a> {
    fields: &'a Fields,
    known: Vec<&'static str>,
}

impl<'a> Reader<'a> {
    /// A reader over `fields`.
    pub fn new(fields: &'a Fields) -> Self {
        Self {
            fields,
            known: Vec::new(),
        }
    }

    /// The raw text of `name`, empty counted as absent.
    pub fn text(&mut self, name: &'static str) -> Option<&'a str> {
        self.known.push(name);
        self.fields
            .get(name)
            .map(String::as_str)
            .map(str::trim)
            .filter(|v| !v.is_empty() && *v != NULL)
    }

    /// Whether `name` is given as `null` (the text, or a JSON `null`).
    pub fn null(&mut self, name: &'static str) -> bool {
        self.known.push(name);
        self.fields
            .get(name)
            .map(|v| v.trim())
            .is_some_and(|v| v == NULL || v.eq_ignore_ascii_case("null"))
    }

    /// A limit: a whole number, where `0`, `null` (a form's text) or a JSON `null` lift
    /// it. `Some(None)`: lift it; `Some(Some(n))`: set it; `None`: not given.
    ///
    /// # Errors
    /// When present and none of these.
    pub fn limit(&mut self, name: &'static str) -> Result<Option<Option<u32>>, Invalid> {
        if self.null(name) {
            return Ok(Some(None));
        }
        Ok(self.number(name)?.map(|n| (n > 0).then_some(n)))
    }

    /// A required text.
    ///
    /// # Errors
    /// When it is missing.
    pub fn required(&mut self, name: &'static str) -> Result<&'a str, Invalid> {
        match self.text(name) {
            Some(v) => Ok(v),
            None => invalid(name, "required"),
        }
    }

    /// A whole number.
    ///
    /// # Errors
    /// When present and not a whole number.
    pub fn number(&mut self, name: &'static str) -> Result<Option<u32>, Invalid> {
        self.text(name)
            .map(|v| {
                v.parse::<u32>()
                    .or_else(|_| {
                        v.parse::<f64>()
                            .ok()
                            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= f64::from(u32::MAX))
                            .map(|f| f as u32)
                            .ok_or(())
                    })
                    .map_err(|_| Invalid {
                        field: name.into(),
                        reason: format!("\"{v}\": expected a whole number"),
                    })
            })
            .transpose()
    }

    /// A boolean (`1`/`0`, `true`/`false`, `yes`/`no`).
    ///
    /// # Errors
    /// When present and not a boolean.
    pub fn flag(&mut self, name: &'static str) -> Result<Option<bool>, Invalid> {
        self.text(name)
            .map(|v| match v.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => invalid(name, format!("\"{v}\": expected true/false or 1/0")),
            })
            .transpose()
    }

    /// A date (`YYYY-MM-DD[ HH:MM:SS]`) or Unix seconds, from 1970-01-01 to [`LATEST`].
    ///
    /// # Errors
    /// When present and neither, or Unix seconds out of that range.
    pub fn date(&mut self, name: &'static str, edge: Edge) -> Result<Option<u64>, Invalid> {
        self.time(name, edge, LATEST)
    }

    /// A list filter's time (the audit's `since`): a date, or any Unix seconds, since one
    /// past [`LATEST`] is stored nowhere and only selects nothing.
    ///
    /// # Errors
    /// When present and neither a date nor Unix seconds.
    pub fn since(&mut self, name: &'static str) -> Result<Option<u64>, Invalid> {
        self.time(name, Edge::Start, u64::MAX)
    }

    fn time(
        &mut self,
        name: &'static str,
        edge: Edge,
        latest: u64,
    ) -> Result<Option<u64>, Invalid> {
        self.text(name)
            .map(|v| {
                time(v, edge, latest).map_err(|reason| Invalid {
                    field: name.into(),
                    reason,
                })
            })
            .transpose()
    }

    /// Fails on the first field no reader asked for.
    ///
    /// # Errors
    /// Naming the unknown field.
    pub fn finish(&self, ignored: &[&str]) -> Result<(), Invalid> {
        let mut names: Vec<&String> = self.fields.keys().collect();
        names.sort();
        match names
            .into_iter()
            .find(|n| !self.known.contains(&n.as_str()) && !ignored.contains(&n.as_str()))
        {
            Some(name) => invalid(name, "unknown field"),
            None => Ok(()),
        }
    }
}

impl Reader<'_> {
    /// For query parameters: fails on the first one no reader asked for, naming it and
    /// the ones this call takes, so a misspelt filter is refused instead of ignored.
    ///
    /// # Errors
    /// Naming the unknown parameter.
    pub fn deny_unknown(&self) -> Result<(), Invalid> {
        let mut known = self.known.clone();
        known.sort_unstable();
        known.dedup();
        let mut names: Vec<&String> = self.fields.keys().collect();
        names.sort();
        match names.into_iter().find(|n| !known.contains(&n.as_str())) {
            Some(name) => invalid(
                name,
                format!("unknown parameter; this call takes {}", known.join(", ")),
            ),
            None => Ok(()),
        }
    }
}

/// Applies product fields to `product` (a new one with defaults, or the stored one for an
/// update). `code` and `created_at` are the caller's.
///
/// # Errors
/// The first bad field.
pub fn apply_product(r: &mut Reader<'_>, product: &mut Product) -> Result<(), Invalid> {
    if let Some(name) = r.text("name") {
        product.name = name.to_owned();
    }
    if let Some(description) = r.text("description") {
        product.description = description.to_owned();
    }
    if let Some(kind) = r.text("type") {
        product.kind = match kind {
            "single" => ProductType::Single,
            "group" => ProductType::Group,
            other => return invalid("type", format!("\"{other}\": use single or group")),
        };
    }
    if let Some(status) = r.text("status") {
        product.status = match status {
            "active" => Status::Active,
            "inactive" => Status::Inactive,
            other => return invalid("status", format!("\"{other}\": use active or inactive")),
        };
    }
    if let Some(t) = r.date("available_from", Edge::Start)? {
        product.available_from = Some(t);
    }
    if let Some(t) = r.date("available_until", Edge::End)? {
        product.available_until = Some(t);
    }
    if let Some(text) = r.text("cost") {
        product.cost = Some(cost(text)?);
    }
    if let Some(currency) = r.text("currency") {
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return invalid(
                "currency",
                format!("\"{currency}\": expected an ISO 4217 code such as EUR"),
            );
        }
        product.currency = Some(currency.to_owned());
    }
    if let Some(days) = r.limit("period")? {
        product.period_days = days;
    }
    if let Some(t) = r.date("access_start", Edge::Start)? {
        product.access_start = Some(t);
    }
    if let Some(t) = r.date("access_expire", Edge::End)? {
        product.access_expire = Some(t);
    }
    if let Some(hours) = r.limit("hours")? {
        product.hours = hours;
    }
    if let Some(from) = r.text("hours_from") {
        product.hours_from = match from {
            "purchase" => HoursFrom::Purchase,
            "first_play" => HoursFrom::FirstPlay,
            other => {
                return invalid(
                    "hours_from",
                    format!("\"{other}\": use purchase or first_play"),
                )
            }
        };
    }
    if let Some(n) = r.limit("activation")? {
        product.activations = n;
    }
    // `device_ban` is `max_devices = 1`; `device_ban = 0` (or null) lifts the limit. An
    // explicit `max_devices` in the same request wins.
    let ban = if r.null("device_ban") {
        Some(false)
    } else {
        r.flag("device_ban")?
    };
    match r.limit("max_devices")? {
        Some(n) => product.max_devices = n,
        None => match ban {
            Some(true) => product.max_devices = Some(1),
            Some(false) => product.max_devices = None,
            None => {}
        },
    }
    if let Some(n) = r.limit("max_sessions")? {
        product.max_sessions = n;
    }
    subscription_type(r)?;
    if let Some(policy) = r.text("concurrency_policy") {
        product.concurrency_policy = match policy {
            "refuse" => crate::sessions::Policy::Refuse,
            "replace_oldest" => crate::sessions::Policy::ReplaceOldest,
            other => {
                return invalid(
                    "concurrency_policy",
                    format!("\"{other}\": use refuse or replace_oldest"),
                )
            }
        };
    }
    if let Some(flag) = r.flag("ip_recovery")? {
        product.ip_recovery = flag;
    }
    if let Some(seconds) = r.number("preview")? {
        product.preview_seconds = seconds;
    }
    if let Some(classes) = r.text("device_classes") {
        product.device_classes = classes
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(|c| {
                DeviceClass::parse(c).ok_or_else(|| Invalid {
                    field: "device_classes".into(),
                    reason: format!("\"{c}\": use ott, iptv or hybrid"),
                })
            })
            .collect::<Result<_, _>>()?;
    }
    if product.name.is_empty() {
        return invalid("name", "required");
    }
    if let (Some(from), Some(until)) = (product.available_from, product.available_until) {
        if until <= from {
            return invalid("available_until", "must be after available_from");
        }
    }
    if let (Some(start), Some(expire)) = (product.access_start, product.access_expire) {
        if expire <= start {
            return invalid("access_expire", "must be after access_start");
        }
    }
    Ok(())
}

/// The PPV API's `subscription_type`: usher sells `subscription` (pay-per-view access),
/// the default; `password` (a shared password) and `collection` (a registration form,
/// with its `collection_type`) are refused, since usher runs neither.
fn subscription_type(r: &mut Reader<'_>) -> Result<(), Invalid> {
    match r.text("subscription_type") {
        None | Some("subscription") => {}
        Some(kind @ ("password" | "collection")) => {
            return invalid(
                "subscription_type",
                format!(
                    "\"{kind}\" is not supported by usher: use subscription (pay-per-view access)"
                ),
            )
        }
        Some(other) => {
            return invalid(
                "subscription_type",
                format!(
                    "\"{other}\": use subscription (password and collection are not supported)"
                ),
            )
        }
    }
    if r.text("collection_type").is_some() {
        return invalid(
            "collection_type",
            "only for subscription_type=collection, which usher does not support",
        );
    }
    Ok(())
}

/// A new media from fields.
///
/// # Errors
/// The first bad field.
pub fn media(r: &mut Reader<'_>, code: String, now: u64) -> Result<Media, Invalid> {
    let prefix = r.required("prefix")?;
    let normalised = crate::path::normalize(prefix).map_err(|e| Invalid {
        field: "prefix".into(),
        reason: format!("\"{prefix}\": {e}"),
    })?;
    if normalised != prefix || !prefix.ends_with('/') || prefix == "/" {
        return invalid("prefix", format!("\"{prefix}\": a normalised path prefix below / ending in /, such as /events/final/"));
    }
    let playlist = r.text("playlist").unwrap_or("master.m3u8");
    if playlist.contains("..") || playlist.starts_with('/') {
        return invalid(
            "playlist",
            format!("\"{playlist}\": a file name relative to the prefix"),
        );
    }
    let media = Media {
        code,
        title: r.text("title").unwrap_or_default().to_owned(),
        prefix: prefix.to_owned(),
        playlist: playlist.to_owned(),
        editorial: r.text("editorial").map(str::to_owned),
        live: r.flag("live")?.unwrap_or(false),
        live_title: r.text("live_title").map(str::to_owned),
        created_at: now,
    };
    Ok(media)
}

/// Applies buyer fields to a purchase (new or stored).
///
/// # Errors
/// The first bad field.
pub fn apply_purchase(r: &mut Reader<'_>, purchase: &mut Purchase) -> Result<(), Invalid> {
    if let Some(email) = r.text("email") {
        if !email.contains('@') || email.contains(char::is_whitespace) {
            return invalid("email", format!("\"{email}\": not an email address"));
        }
        purchase.email = Some(email.to_owned());
    }
    if let Some(phone) = r.text("phone") {
        purchase.phone = Some(phone.to_owned());
    }
    if let Some(name) = r.text("name") {
        purchase.name = Some(name.to_owned());
    }
    if let Some(t) = r.date("access_start", Edge::Start)? {
        purchase.access_start = Some(t);
    }
    if let Some(t) = r.date("access_expire", Edge::End)? {
        purchase.access_expire = Some(t);
    }
    if let Some(n) = r.limit("activation")? {
        purchase.activations = n;
    }
    if let Some(status) = r.text("status") {
        purchase.status = match status {
            "active" => PurchaseStatus::Active,
            "revoked" => PurchaseStatus::Revoked,
            other => return invalid("status", format!("\"{other}\": use active or revoked")),
        };
    }
    if let (Some(start), Some(expire)) = (purchase.access_start, purchase.access_expire) {
        if expire <= start {
            return invalid("access_expire", "must be after access_start");
        }
    }
    Ok(())
}

/// Checks an id supplied by the caller (codes, hashes, accounts): 1–64 of
/// `A-Z a-z 0-9 _ - . @`.
///
/// # Errors
/// When it has other characters or the wrong length.
pub fn id(field: &str, value: &str) -> Result<String, Invalid> {
    let ok = (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.@".contains(&b));
    if ok {
        Ok(value.to_owned())
    } else {
        invalid(
            field,
            format!("\"{value}\": use 1-64 of A-Z a-z 0-9 _ - . @"),
        )
    }
}

#[cfg(test)]
mod limits_tests;

#[cfg(test)]
mod tests;
