//! What a reload changed that it cannot apply: the dotted keys that differ between the file
//! in force and the new one, in the sections a running usher keeps until a restart.

/// Top-level sections a reload swaps in (see `State::reload`). Every other section —
/// `listen`, `admin`, `upstream`, `upstreams`, `shield`, `store`, `rights`, `sessions`,
/// `demo`, and any section added later until it is listed here — keeps its running values
/// until a restart, so a change to it is reported.
const RELOADABLE: &[&str] = &[
    "token",
    "access",
    "routes",
    "secure_link",
    "akamai",
    "media_cdn",
    "webhooks",
    "playlists",
];

/// The dotted keys (`sessions.idle_timeout`, `listen.http`, `upstreams.cdn`) that differ
/// between `old` and `new` and that a reload cannot apply, in file order. Only names are
/// returned, never values, so the list may be logged.
pub fn restart_required(old: &toml::Table, new: &toml::Table) -> Vec<String> {
    let mut changed = Vec::new();
    diff_tables("", old, new, &mut changed);
    changed
        .into_iter()
        .filter(|key| {
            let section = key.split(['.', '[']).next().unwrap_or_default();
            !RELOADABLE.contains(&section)
        })
        .collect()
}

/// The dotted keys that differ between `old` and `new` in the sections a reload applies,
/// in file order: what a reload changed. Names only, never values.
pub fn applied(old: &toml::Table, new: &toml::Table) -> Vec<String> {
    let mut changed = Vec::new();
    diff_tables("", old, new, &mut changed);
    changed.retain(|key| RELOADABLE.contains(&key.split(['.', '[']).next().unwrap_or_default()));
    changed
}

/// The file as it is in force after a reload from `old` to `new`: `new`'s reloadable
/// sections, `old`'s others (they keep running until a restart), so the next reload still
/// names a change that is waiting for one.
pub fn in_force(old: &toml::Table, new: &toml::Table) -> toml::Table {
    let mut out = new.clone();
    out.retain(|key, _| RELOADABLE.contains(&key));
    for (key, value) in old {
        if !RELOADABLE.contains(&key.as_str()) {
            out.insert(key.clone(), value.clone());
        }
    }
    out
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

fn diff_tables(prefix: &str, old: &toml::Table, new: &toml::Table, out: &mut Vec<String>) {
    let mut keys: Vec<&String> = old.keys().collect();
    keys.extend(new.keys().filter(|k| !old.contains_key(*k)));
    for key in keys {
        let path = join(prefix, key);
        match (old.get(key), new.get(key)) {
            (Some(a), Some(b)) => diff_values(&path, a, b, out),
            _ => out.push(path),
        }
    }
}

fn diff_values(path: &str, old: &toml::Value, new: &toml::Value, out: &mut Vec<String>) {
    match (old, new) {
        (toml::Value::Table(a), toml::Value::Table(b)) => diff_tables(path, a, b, out),
        (toml::Value::Array(a), toml::Value::Array(b))
            if a.len() == b.len() && a.iter().chain(b).all(toml::Value::is_table) =>
        {
            for (n, (x, y)) in a.iter().zip(b).enumerate() {
                diff_values(&format!("{path}[{n}]"), x, y, out);
            }
        }
        (a, b) if a == b => {}
        _ => out.push(path.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn only_changed_keys_of_sections_kept_until_restart_are_named() {
        let old = table(
            "[listen]\nhttp = \"a\"\n[sessions]\nidle_timeout = \"60s\"\n[token]\nsession_ttl = \"1m\"\n[shield]\nmemory = 1\n",
        );
        let new = table(
            "[listen]\nhttp = \"a\"\n[sessions]\nidle_timeout = \"90s\"\nbind_ip = true\n[token]\nsession_ttl = \"2m\"\n[upstreams.cdn]\norigin = \"x\"\n",
        );
        assert_eq!(
            restart_required(&old, &new),
            vec![
                "sessions.idle_timeout",
                "sessions.bind_ip",
                "shield",
                "upstreams"
            ]
        );
        assert!(restart_required(&old, &old).is_empty());
    }

    #[test]
    fn a_change_waiting_for_a_restart_stays_named_on_the_next_reload() {
        let old = table("[sessions]\nidle_timeout = \"60s\"\n[token]\nsession_ttl = \"1m\"\n");
        let new = table("[sessions]\nidle_timeout = \"90s\"\n[token]\nsession_ttl = \"2m\"\n");
        let running = in_force(&old, &new);
        assert_eq!(running["token"]["session_ttl"].as_str(), Some("2m"));
        assert_eq!(
            restart_required(&running, &new),
            vec!["sessions.idle_timeout"]
        );
    }

    #[test]
    fn arrays_of_tables_are_compared_element_by_element() {
        let old = table(
            "[[upstream.fallbacks]]\norigin = \"a\"\n[[upstream.fallbacks]]\norigin = \"b\"\n",
        );
        let new = table(
            "[[upstream.fallbacks]]\norigin = \"a\"\n[[upstream.fallbacks]]\norigin = \"c\"\n",
        );
        assert_eq!(
            restart_required(&old, &new),
            vec!["upstream.fallbacks[1].origin"]
        );
    }
}
