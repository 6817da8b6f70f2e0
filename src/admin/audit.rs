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
//! - A call that fails writes nothing and is not recorded (the log has its refusal), except
//!   a 503 after which it partly stands ([`AdminError::untold`]): a shield purge done here
//!   but not announced, a session end not recorded in Redis. Its entry says so, as does
//!   that of a device freed whose ends did not reach every node (`"announced": false` in
//!   its answer): `"announced"` (or `"recorded_in_redis"`) `{"before": null, "after":
//!   false}` among its changes.
//! - Credentials are never recorded: a changed `ticket` (or `token`, `secret`, `apikey`)
//!   shows as `"<redacted>"` before and after, saying only that it changed.
//! - Admin writes to the store are recorded one at a time (a lock spans snapshot, write,
//!   snapshot), so the before/after of one never holds another's change. Playback may
//!   still touch a purchase in between (`first_play_at`), and shows in the diff when it
//!   does. Writes with no stored state (a rights invalidation, a cache purge, ending a
//!   session) take no part in that lock: revocation never waits behind a slow store.
//! - The entry is appended after the write commits; if appending fails, the write stands
//!   and the failure is logged as an error.

use std::future::Future;

use serde_json::{json, Map, Value};

use super::fields::Fields;
use super::ops::{self, AdminError};
use crate::proxy::State;
use crate::rights::store::AuditEntry;

mod routes;
mod snapshot;

use routes::target;
pub use routes::{api_write, facade_write, Answered, Kind, Part, Write, API_WRITES, FACADE_WRITES};
use snapshot::{snapshot, Snapshot};

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
    // Only writes to stored state need each other out of the way; a rights invalidation or
    // a cache purge must not wait behind a write the store is slow to answer.
    let _one_at_a_time = match write.kind {
        Kind::Other(_) | Kind::Session => None,
        _ => Some(WRITES.lock().await),
    };
    let known = target(write.target, segments, fields, None);
    let before = match &known {
        Some(id) => snapshot(state, write.kind, id).await,
        None => Snapshot::default(),
    };
    // A target without an id (the seller's contacts) is named by its kind.
    let named = |id: Option<String>| {
        id.filter(|id| !id.is_empty())
            .unwrap_or_else(|| write.kind.as_str().to_owned())
    };
    let answer = match op.await {
        Ok(answer) => answer,
        Err(e) => {
            // Done here, not sure to reach the other nodes: on record all the same.
            if let Some(untold) = e.untold() {
                let id = named(known);
                record(state, actor, write, id, before, Some(untold)).await;
            }
            return Err(e);
        }
    };
    let id = match known {
        Some(id) => Some(id),
        None => target(write.target, segments, fields, Some(&answer)),
    };
    let id = named(id);
    if write.action == "purchase.create" && already_created(state, &id).await {
        // An idempotent sale answered again (its Idempotency-Key or order_id came back)
        // created nothing: its first answer is the one on record.
        return Ok(answer);
    }
    let untold = (answer.field("announced").as_deref() == Some("false")).then_some("announced");
    record(state, actor, write, id, before, untold).await;
    Ok(answer)
}

/// Appends the entry of `write` to target `id`, from `before` to now; `untold` names the
/// flag (`announced`, `recorded_in_redis`) recorded false for a write the other nodes are
/// not sure to have been told of.
async fn record(
    state: &State,
    actor: &Actor,
    write: &Write,
    id: String,
    before: Snapshot,
    untold: Option<&'static str>,
) {
    let after = snapshot(state, write.kind, &id).await;
    let mut changes = changes(&before.value, &after.value);
    if let (Some(flag), Some(fields)) = (untold, changes.as_object_mut()) {
        fields.insert(flag.to_owned(), json!({"before": null, "after": false}));
    }
    let entry = AuditEntry {
        id: 0,
        at: (state.clock)(),
        actor: actor.name.clone(),
        interface: actor.interface.as_str().to_owned(),
        action: write.action.to_owned(),
        target_kind: write.kind.as_str().to_owned(),
        purchase: after.purchase.or(before.purchase),
        account: after.account.or(before.account),
        target: id,
        changes,
    };
    append(state, entry).await;
}

/// Whether the trail already records the creation of purchase `hash`.
async fn already_created(state: &State, hash: &str) -> bool {
    let filter = crate::rights::store::AuditFilter {
        purchase: Some(hash.to_owned()),
        action: Some("purchase.create".to_owned()),
        ..Default::default()
    };
    let page = crate::rights::store::Page {
        offset: 0,
        limit: 1,
    };
    ops::blocking(state, move |s| s.audit(&filter, page))
        .await
        .is_ok_and(|(_, total)| total > 0)
}

/// Reloads the config (as `POST /reload` or SIGHUP) and records the dotted keys of the
/// settings it applied that changed (their values redacted: they may hold keys).
///
/// # Errors
/// The new config's problems; nothing changed and nothing is recorded.
pub async fn reload(
    state: &State,
    actor: &Actor,
) -> Result<crate::proxy::Reloaded, crate::config::ConfigError> {
    let before = state.config().file.clone();
    let done = state.reload()?;
    let after = state.config().file.clone();
    let changed: Map<String, Value> = crate::config::changes::applied(&before, &after)
        .into_iter()
        .map(|key| (key, json!({"before": REDACTED, "after": REDACTED})))
        .collect();
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
    Ok(done)
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
}
