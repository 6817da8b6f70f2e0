//! The audit trail: every admin write that succeeds — through the JSON API, the facade,
//! `usher admin`, `POST /reload` or SIGHUP — is appended to the store with who (the
//! credential's name), through what, what, when, and the before/after of the fields it
//! changed, and logged once (target `usher::audit`, field names only, never values).
//!
//! Writes are recorded at the dispatch boundary, not inside each operation: [`API_WRITES`]
//! and [`FACADE_WRITES`] say which calls are writes, what to call them and where the id of
//! their target is; [`recorded`] snapshots the target before, runs the call, snapshots it
//! after and keeps what changed. A new write route is one table entry.
//!
//! Rules:
//! - A call that fails writes nothing and is not recorded (the log has its refusal).
//! - Credentials are never recorded: a changed `ticket` (or `token`, `secret`, `apikey`)
//!   shows as `"<redacted>"` before and after, saying only that it changed.
//! - Admin writes are recorded one at a time (a lock spans snapshot, write, snapshot), so
//!   the before/after of one never holds another's change. Playback may still touch a
//!   purchase in between (`first_play_at`), and shows in the diff when it does.
//! - The entry is appended after the write commits; if appending fails, the write stands
//!   and the failure is logged as an error.

use std::future::Future;

use http::Method;
use serde_json::{json, Map, Value};

use super::fields::Fields;
use super::ops::{self, AdminError};
use crate::proxy::State;
use crate::rights::store::{AuditEntry, PurchaseFilter};

/// The door a write came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interface {
    /// The JSON API (`/api/v1/`).
    Api,
    /// The PPV facade (`/api/ppv/`, `sendVideoTicket.php`).
    Facade,
    /// `usher admin` (the JSON API, sending `X-Usher-Interface: cli`).
    Cli,
    /// `POST /reload`.
    Reload,
    /// SIGHUP.
    Signal,
}

impl Interface {
    /// As recorded.
    pub fn as_str(self) -> &'static str {
        match self {
            Interface::Api => "api",
            Interface::Facade => "facade",
            Interface::Cli => "cli",
            Interface::Reload => "reload",
            Interface::Signal => "signal",
        }
    }
}

/// Who made a write, and through what.
#[derive(Debug, Clone)]
pub struct Actor {
    /// The admin credential's name (`admin` for the main one), or `signal`.
    pub name: String,
    /// The door.
    pub interface: Interface,
}

impl Actor {
    /// A SIGHUP.
    pub fn signal() -> Self {
        Self {
            name: "signal".to_owned(),
            interface: Interface::Signal,
        }
    }
}

/// What kind of thing a write changes, which says how to snapshot it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A product by code.
    Product,
    /// A media by code.
    Media,
    /// A purchase by hash.
    Purchase,
    /// An account by id.
    Account,
    /// The seller's contacts (no id).
    Contacts,
    /// A content id in a product: `product/content`.
    Link,
    /// A device's activation of a purchase: `purchase/device`.
    Device,
    /// A live session by id.
    Session,
    /// Anything without a stored state to compare (recorded with no field changes).
    Other(&'static str),
}

impl Kind {
    /// As recorded in `target_kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Product => "product",
            Kind::Media => "media",
            Kind::Purchase => "purchase",
            Kind::Account => "account",
            Kind::Contacts => "contacts",
            Kind::Link => "link",
            Kind::Device => "device",
            Kind::Session => "session",
            Kind::Other(name) => name,
        }
    }
}

/// Where one part of a target's id comes from; the parts are joined with `/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// That path segment (after `/api/v1/`, from 0).
    Segment(usize),
    /// That field of the body (JSON) or of the parameters (facade).
    Field(&'static str),
    /// That field of the answer (JSON key, or XML element for the facade): for creates.
    Answer(&'static str),
    /// The purchase whose ticket the answer's play URL carries, among those of the
    /// `email` field (`sendVideoTicket.php`).
    SoldByUrl,
}

/// One kind of write.
#[derive(Debug, Clone, Copy)]
pub struct Write {
    /// Its name, such as `purchase.update` (the audit's `action` filter).
    pub action: &'static str,
    /// What it changes.
    pub kind: Kind,
    /// Where the id of what it changes is.
    pub target: &'static [Part],
}

const fn write(action: &'static str, kind: Kind, target: &'static [Part]) -> Write {
    Write {
        action,
        kind,
        target,
    }
}

use Part::{Answer, Field, Segment};

/// The JSON API's writes: (methods, path after `/api/v1/` with `*` for any segment, write).
pub const API_WRITES: &[(&str, &str, Write)] = &[
    (
        "POST",
        "products",
        write("product.create", Kind::Product, &[Answer("code")]),
    ),
    (
        "PATCH PUT",
        "products/*",
        write("product.update", Kind::Product, &[Segment(1)]),
    ),
    (
        "DELETE",
        "products/*",
        write("product.delete", Kind::Product, &[Segment(1)]),
    ),
    (
        "POST",
        "products/*/media",
        write(
            "product.media.add",
            Kind::Link,
            &[Segment(1), Field("media")],
        ),
    ),
    (
        "DELETE",
        "products/*/media/*",
        write(
            "product.media.remove",
            Kind::Link,
            &[Segment(1), Segment(3)],
        ),
    ),
    (
        "POST",
        "media",
        write("media.create", Kind::Media, &[Answer("code")]),
    ),
    (
        "DELETE",
        "media/*",
        write("media.delete", Kind::Media, &[Segment(1)]),
    ),
    (
        "POST",
        "buyers",
        write("purchase.create", Kind::Purchase, &[Answer("hash")]),
    ),
    (
        "PATCH PUT",
        "buyers/*",
        write("purchase.update", Kind::Purchase, &[Segment(1)]),
    ),
    (
        "DELETE",
        "buyers/*",
        write("purchase.delete", Kind::Purchase, &[Segment(1)]),
    ),
    (
        "POST",
        "buyers/*/revoke",
        write("purchase.revoke", Kind::Purchase, &[Segment(1)]),
    ),
    (
        "DELETE",
        "buyers/*/devices/*",
        write("device.free", Kind::Device, &[Segment(1), Segment(3)]),
    ),
    (
        "DELETE",
        "sessions/*",
        write("session.end", Kind::Session, &[Segment(1)]),
    ),
    (
        "POST",
        "cache/purge",
        write("cache.purge", Kind::Other("cache"), &[Field("prefix")]),
    ),
    (
        "PUT PATCH",
        "accounts/*",
        write("account.update", Kind::Account, &[Segment(1)]),
    ),
];

/// The facade's writes: (method, write). `sendVideoTicket` is `/sendVideoTicket.php`.
pub const FACADE_WRITES: &[(&str, Write)] = &[
    (
        "create",
        write("product.create", Kind::Product, &[Answer("Code")]),
    ),
    (
        "update",
        write("product.update", Kind::Product, &[Field("code")]),
    ),
    (
        "delete",
        write("product.delete", Kind::Product, &[Field("code")]),
    ),
    (
        "addmedia",
        write(
            "product.media.add",
            Kind::Link,
            &[Field("code"), Field("media")],
        ),
    ),
    (
        "deletemedia",
        write(
            "product.media.remove",
            Kind::Link,
            &[Field("code"), Field("media")],
        ),
    ),
    (
        "addbuyer",
        write("purchase.create", Kind::Purchase, &[Answer("Hash")]),
    ),
    (
        "updatebuyer",
        write("purchase.update", Kind::Purchase, &[Field("hash")]),
    ),
    (
        "deletebuyer",
        write("purchase.delete", Kind::Purchase, &[Field("hash")]),
    ),
    (
        "updatecontacts",
        write("contacts.update", Kind::Contacts, &[]),
    ),
    (
        "sendVideoTicket",
        write("purchase.create", Kind::Purchase, &[Part::SoldByUrl]),
    ),
];

/// The write a JSON API call is, if it is one.
pub fn api_write(method: &Method, segments: &[&str]) -> Option<&'static Write> {
    API_WRITES.iter().find_map(|(methods, pattern, w)| {
        let method_ok = methods.split(' ').any(|m| m == method.as_str());
        let parts: Vec<&str> = pattern.split('/').collect();
        let path_ok = parts.len() == segments.len()
            && parts.iter().zip(segments).all(|(p, s)| *p == "*" || p == s);
        (method_ok && path_ok).then_some(w)
    })
}

/// The write a facade method is, if it is one.
pub fn facade_write(method: &str) -> Option<&'static Write> {
    FACADE_WRITES
        .iter()
        .find_map(|(name, w)| (*name == method).then_some(w))
}

/// An answer a target id can be read from.
pub trait Answered {
    /// The text of `name` in the answer.
    fn field(&self, name: &str) -> Option<String>;

    /// The whole answer, when it is text (the video-ticket call's play URL).
    fn whole(&self) -> Option<&str> {
        None
    }
}

impl Answered for super::api::Answer {
    fn field(&self, name: &str) -> Option<String> {
        match self.1.get(name)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
}

impl Answered for String {
    fn field(&self, name: &str) -> Option<String> {
        let open = format!("<{name}>");
        let start = self.find(&open)? + open.len();
        let end = start + self[start..].find(&format!("</{name}>"))?;
        Some(
            self[start..end]
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&"),
        )
    }

    fn whole(&self) -> Option<&str> {
        Some(self)
    }
}

/// Serialises admin writes, so one's before/after never holds another's change.
static WRITES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs `op`, the call `write` describes (or any call when `write` is `None`), and records
/// it when it succeeds. `segments` and `fields` are the call's path and input.
///
/// # Errors
/// Whatever `op` fails with; recording never fails the call.
pub async fn recorded<T: Answered>(
    state: &State,
    actor: &Actor,
    write: Option<&'static Write>,
    segments: &[&str],
    fields: &Fields,
    op: impl Future<Output = Result<T, AdminError>>,
) -> Result<T, AdminError> {
    let Some(write) = write else {
        return op.await;
    };
    let _one_at_a_time = WRITES.lock().await;
    let known = target(write.target, segments, fields, None);
    let before = match &known {
        Some(id) => snapshot(state, write.kind, id).await,
        None => Snapshot::default(),
    };
    let answer = op.await?;
    let id = match known {
        Some(id) => Some(id),
        None => match write.target {
            [Part::SoldByUrl] => sold_by_url(state, fields, &answer).await,
            parts => target(parts, segments, fields, Some(&answer)),
        },
    };
    // A target without an id (the seller's contacts) is named by its kind.
    let id = id
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| write.kind.as_str().to_owned());
    let after = snapshot(state, write.kind, &id).await;
    let entry = AuditEntry {
        id: 0,
        at: (state.clock)(),
        actor: actor.name.clone(),
        interface: actor.interface.as_str().to_owned(),
        action: write.action.to_owned(),
        target_kind: write.kind.as_str().to_owned(),
        purchase: after.purchase.clone().or(before.purchase.clone()),
        account: after.account.clone().or(before.account.clone()),
        target: id,
        changes: changes(&before.value, &after.value),
    };
    append(state, entry).await;
    Ok(answer)
}

/// Reloads the config (as `POST /reload` or SIGHUP) and records which reloadable sections
/// changed (their values redacted: they hold keys).
///
/// # Errors
/// The new config's problems; nothing changed and nothing is recorded.
pub async fn reload(state: &State, actor: &Actor) -> Result<(), crate::config::ConfigError> {
    let before = sections(&state.config());
    state.reload()?;
    let after = sections(&state.config());
    let mut changed = Map::new();
    for ((name, old), (_, new)) in before.iter().zip(&after) {
        if old != new {
            changed.insert(
                (*name).to_owned(),
                json!({"before": REDACTED, "after": REDACTED}),
            );
        }
    }
    let entry = AuditEntry {
        id: 0,
        at: (state.clock)(),
        actor: actor.name.clone(),
        interface: actor.interface.as_str().to_owned(),
        action: "config.reload".to_owned(),
        target_kind: "config".to_owned(),
        target: state
            .source
            .get()
            .map(|(path, _)| path.display().to_string())
            .unwrap_or_default(),
        purchase: None,
        account: None,
        changes: Value::Object(changed),
    };
    append(state, entry).await;
    Ok(())
}

/// The sections a reload can change, each as text to compare (never recorded).
fn sections(config: &crate::config::Config) -> [(&'static str, String); 4] {
    [
        ("token", format!("{:?}", config.token)),
        ("access", format!("{:?}", config.access)),
        ("routes", format!("{:?}", config.routes)),
        ("formats", format!("{:?}", config.formats)),
    ]
}

async fn append(state: &State, entry: AuditEntry) {
    let names: Vec<&str> = entry
        .changes
        .as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default();
    tracing::info!(
        target: "usher::audit",
        actor = %entry.actor,
        interface = %entry.interface,
        action = %entry.action,
        target_kind = %entry.target_kind,
        target = %entry.target,
        purchase = entry.purchase.as_deref().unwrap_or(""),
        account = entry.account.as_deref().unwrap_or(""),
        fields = %names.join(","),
        "admin write"
    );
    if let Err(e) = ops::blocking(state, move |s| s.append_audit(&entry)).await {
        tracing::error!(error = %e, "could not append to the audit trail; the write stands");
    }
}

/// The target id from `parts`; `None` when a part is not there (yet).
fn target(
    parts: &[Part],
    segments: &[&str],
    fields: &Fields,
    answer: Option<&dyn Answered>,
) -> Option<String> {
    let mut id = Vec::new();
    for part in parts {
        id.push(match part {
            Part::Segment(n) => segments.get(*n).map(|s| (*s).to_owned())?,
            Part::Field(name) => fields.get(*name).map(|v| v.trim().to_owned())?,
            Part::Answer(name) => answer?.field(name)?,
            Part::SoldByUrl => return None,
        });
    }
    Some(id.join("/"))
}

/// The hash of the purchase whose ticket the play URL in `answer` carries.
async fn sold_by_url(state: &State, fields: &Fields, answer: &impl Answered) -> Option<String> {
    let url = answer.whole()?;
    let param = format!("{}=", state.config().token.ticket_param);
    let ticket = url.split(['?', '&']).find_map(|p| p.strip_prefix(&param))?;
    let filter = PurchaseFilter {
        email: fields.get("email").cloned(),
        ..PurchaseFilter::default()
    };
    let ticket = ticket.to_owned();
    let page = crate::rights::store::Page::ALL;
    ops::blocking(state, move |s| s.purchases(&filter, page))
        .await
        .ok()?
        .into_iter()
        .rev()
        .find(|p| p.ticket.as_deref() == Some(ticket.as_str()))
        .map(|p| p.hash)
}

/// A target's state, as JSON (`null` when absent), and whom it concerns.
#[derive(Debug, Default)]
struct Snapshot {
    value: Value,
    purchase: Option<String>,
    account: Option<String>,
}

async fn snapshot(state: &State, kind: Kind, id: &str) -> Snapshot {
    match read(state, kind, id).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, target_kind = kind.as_str(), "audit: could not read the target");
            Snapshot::default()
        }
    }
}

fn value(v: Option<impl serde::Serialize>) -> Value {
    v.map_or(Value::Null, |v| {
        serde_json::to_value(v).expect("model serialises")
    })
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

async fn read(state: &State, kind: Kind, id: &str) -> Result<Snapshot, AdminError> {
    let owned = id.to_owned();
    let (first, second) = id.split_once('/').unwrap_or((id, ""));
    let (first, second) = (first.to_owned(), second.to_owned());
    Ok(match kind {
        Kind::Product => Snapshot {
            value: value(ops::blocking(state, move |s| s.product(&owned)).await?),
            ..Snapshot::default()
        },
        Kind::Media => Snapshot {
            value: value(ops::blocking(state, move |s| s.media(&owned)).await?),
            ..Snapshot::default()
        },
        Kind::Purchase => {
            let v = value(ops::blocking(state, move |s| s.purchase(&owned)).await?);
            Snapshot {
                account: text(&v, "account"),
                purchase: (!v.is_null()).then(|| id.to_owned()),
                value: v,
            }
        }
        Kind::Account => Snapshot {
            value: value(ops::blocking(state, move |s| s.account(&owned)).await?),
            account: Some(id.to_owned()),
            ..Snapshot::default()
        },
        Kind::Contacts => Snapshot {
            value: value(Some(ops::blocking(state, |s| s.contacts()).await?)),
            ..Snapshot::default()
        },
        Kind::Link => {
            let (p, c) = (first.clone(), second.clone());
            let linked = ops::blocking(state, move |s| s.linked(&p))
                .await?
                .contains(&c);
            Snapshot {
                value: if linked {
                    json!({"product": first, "content": second})
                } else {
                    Value::Null
                },
                ..Snapshot::default()
            }
        }
        Kind::Device => {
            let h = first.clone();
            let (purchase, devices) =
                ops::blocking(state, move |s| Ok((s.purchase(&h)?, s.devices(&h)?))).await?;
            Snapshot {
                value: value(devices.into_iter().find(|d| d.device == second)),
                account: purchase.map(|p| p.account),
                purchase: Some(first),
            }
        }
        Kind::Session => {
            let v = value(
                ops::list_sessions(state, None, None)
                    .into_iter()
                    .find(|s| s.sid == id),
            );
            Snapshot {
                purchase: text(&v, "purchase"),
                account: text(&v, "account"),
                value: v,
            }
        }
        Kind::Other(_) => Snapshot::default(),
    })
}

/// What a redacted value is recorded as.
const REDACTED: &str = "<redacted>";
/// Fields whose values are credentials.
const SECRET_FIELDS: &[&str] = &["ticket", "token", "secret", "apikey", "password"];

/// The top-level fields that differ, `{"field": {"before": …, "after": …}}`.
fn changes(before: &Value, after: &Value) -> Value {
    let empty = Map::new();
    let (b, a) = (
        before.as_object().unwrap_or(&empty),
        after.as_object().unwrap_or(&empty),
    );
    let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut out = Map::new();
    for key in keys {
        let (old, new) = (
            b.get(key).unwrap_or(&Value::Null),
            a.get(key).unwrap_or(&Value::Null),
        );
        if old == new {
            continue;
        }
        let shown = |v: &Value| {
            if SECRET_FIELDS.contains(&key.as_str()) && !v.is_null() {
                Value::from(REDACTED)
            } else {
                v.clone()
            }
        };
        out.insert(
            key.clone(),
            json!({"before": shown(old), "after": shown(new)}),
        );
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changed_fields_are_kept_and_tickets_are_redacted() {
        let before =
            json!({"hash": "H", "status": "active", "ticket": "t1.secret", "email": "a@x"});
        let after =
            json!({"hash": "H", "status": "revoked", "ticket": "t2.secret", "email": "a@x"});
        let c = changes(&before, &after);
        assert_eq!(
            c,
            json!({
                "status": {"before": "active", "after": "revoked"},
                "ticket": {"before": REDACTED, "after": REDACTED},
            })
        );
        let created = changes(&Value::Null, &json!({"ticket": "t", "name": "n"}));
        assert_eq!(
            created["ticket"],
            json!({"before": null, "after": REDACTED})
        );
        assert_eq!(created["name"], json!({"before": null, "after": "n"}));
    }

    #[test]
    fn routes_find_their_writes() {
        let w = |m: Method, path: &str| {
            let segments: Vec<&str> = path.split('/').collect();
            api_write(&m, &segments).map(|w| w.action)
        };
        assert_eq!(w(Method::POST, "buyers"), Some("purchase.create"));
        assert_eq!(w(Method::PUT, "buyers/H"), Some("purchase.update"));
        assert_eq!(w(Method::GET, "buyers/H"), None);
        assert_eq!(w(Method::POST, "buyers/H/revoke"), Some("purchase.revoke"));
        assert_eq!(
            w(Method::DELETE, "products/P/media/m"),
            Some("product.media.remove")
        );
        assert_eq!(
            facade_write("addbuyer").map(|w| w.action),
            Some("purchase.create")
        );
        assert!(facade_write("listbuyers").is_none());
        let fields: Fields = [("media".to_owned(), "m1".to_owned())].into();
        let link = api_write(&Method::POST, &["products", "P", "media"]).unwrap();
        assert_eq!(
            target(link.target, &["products", "P", "media"], &fields, None).as_deref(),
            Some("P/m1")
        );
    }

    #[test]
    fn xml_answers_name_their_targets() {
        let xml =
            "<Response><Items><Item><Code>Ab&amp;1</Code></Item></Items></Response>".to_owned();
        assert_eq!(xml.field("Code").as_deref(), Some("Ab&1"));
    }
}
