//! `[store]`: the embedded SQLite file, or a PostgreSQL database shared by nodes.

use std::path::Path;
use std::time::Duration;

use super::Problems;
use crate::config::file::{PostgresFile, RedisFile};
use crate::config::{OnBackendError, PostgresConfig, RedisConfig, SessionsBackend, StoreBackend};

/// Checks `backend` and `[store.postgres]`: the URL from `url` or the variable `url_env`
/// (exactly one), a pool of 1–256 connections, timeouts of at least 100 ms.
pub(super) fn check(
    p: &mut Problems,
    backend: Option<&str>,
    postgres: Option<PostgresFile>,
    base_dir: &Path,
) -> StoreBackend {
    match backend.unwrap_or("sqlite") {
        "sqlite" => {
            if postgres.is_some() {
                p.add(
                    "store.postgres",
                    "",
                    "set store.backend = \"postgres\" to use it",
                );
            }
            StoreBackend::Sqlite
        }
        "postgres" => {
            let Some(file) = postgres else {
                p.add(
                    "store.postgres",
                    "",
                    "backend \"postgres\" needs [store.postgres] with url or url_env",
                );
                return StoreBackend::Sqlite;
            };
            StoreBackend::Postgres(check_postgres(p, file, base_dir))
        }
        other => {
            p.add("store.backend", other, "use \"sqlite\" or \"postgres\"");
            StoreBackend::Sqlite
        }
    }
}

/// The URL of `table` from `url` or the variable `url_env`, exactly one of them (`""`
/// after a problem).
fn url_of(p: &mut Problems, table: &str, url: Option<String>, url_env: Option<String>) -> String {
    match (url, url_env) {
        (Some(url), None) => url,
        (None, Some(var)) => match std::env::var(&var) {
            Ok(url) if !url.is_empty() => url,
            _ => {
                p.add(
                    &format!("{table}.url_env"),
                    &var,
                    "must name an environment variable holding the URL",
                );
                String::new()
            }
        },
        (Some(_), Some(_)) => {
            p.add(table, "", "set url or url_env, not both");
            String::new()
        }
        (None, None) => {
            p.add(&format!("{table}.url"), "", "missing (or set url_env)");
            String::new()
        }
    }
}

/// Checks `[sessions] backend`, `on_backend_error` and `[sessions.redis]`.
pub(super) fn check_sessions_backend(
    p: &mut Problems,
    backend: Option<&str>,
    on_error: Option<&str>,
    redis: Option<RedisFile>,
) -> SessionsBackend {
    let on_backend_error = match on_error.unwrap_or("deny") {
        "deny" => OnBackendError::Deny,
        "local" => OnBackendError::Local,
        other => {
            p.add(
                "sessions.on_backend_error",
                other,
                "use \"deny\" or \"local\"",
            );
            OnBackendError::Deny
        }
    };
    match (backend.unwrap_or("memory"), redis) {
        ("memory", None) => SessionsBackend::Memory,
        ("memory", Some(_)) => {
            p.add(
                "sessions.redis",
                "",
                "set sessions.backend = \"redis\" to use it",
            );
            SessionsBackend::Memory
        }
        ("redis", None) => {
            p.add(
                "sessions.redis",
                "",
                "backend \"redis\" needs [sessions.redis] with url or url_env",
            );
            SessionsBackend::Memory
        }
        ("redis", Some(file)) => {
            let url = url_of(p, "sessions.redis", file.url, file.url_env);
            if !url.is_empty() {
                if let Err(e) = redis::Client::open(url.as_str()) {
                    p.add(
                        "sessions.redis.url",
                        "",
                        format!("not a Redis URL ({})", e.category()),
                    );
                }
            }
            SessionsBackend::Redis(RedisConfig {
                url,
                timeout: p.duration(
                    "sessions.redis.timeout",
                    file.timeout.as_deref(),
                    "1s",
                    Duration::from_millis(10),
                ),
                on_backend_error,
            })
        }
        (other, _) => {
            p.add("sessions.backend", other, "use \"memory\" or \"redis\"");
            SessionsBackend::Memory
        }
    }
}

fn check_postgres(p: &mut Problems, file: PostgresFile, base_dir: &Path) -> PostgresConfig {
    let url = url_of(p, "store.postgres", file.url, file.url_env);
    if !url.is_empty() {
        if let Err(e) = url.parse::<tokio_postgres::Config>() {
            // The value may hold a password: name the error, not the URL.
            p.add(
                "store.postgres.url",
                "",
                format!("not a PostgreSQL URL: {e}"),
            );
        }
    }
    let pool_size = file.pool_size.unwrap_or(8);
    if !(1..=256).contains(&pool_size) {
        p.add(
            "store.postgres.pool_size",
            &pool_size.to_string(),
            "use 1 to 256",
        );
    }
    let min = Duration::from_millis(100);
    let ca_file = file.ca_file.map(|f| base_dir.join(f));
    if let Some(path) = &ca_file {
        if let Err(e) = crate::tls::read_certs(path) {
            p.add(
                "store.postgres.ca_file",
                &path.display().to_string(),
                format!("{e:#}"),
            );
        }
    }
    PostgresConfig {
        url,
        ca_file,
        pool_size,
        connect_timeout: p.duration(
            "store.postgres.connect_timeout",
            file.connect_timeout.as_deref(),
            "5s",
            min,
        ),
        timeout: p.duration("store.postgres.timeout", file.timeout.as_deref(), "5s", min),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_here(
        p: &mut Problems,
        backend: Option<&str>,
        postgres: Option<PostgresFile>,
    ) -> StoreBackend {
        check(p, backend, postgres, Path::new("."))
    }

    fn postgres(url: Option<&str>) -> PostgresFile {
        PostgresFile {
            url: url.map(str::to_owned),
            ..Default::default()
        }
    }

    #[test]
    fn sqlite_is_the_default_and_postgres_takes_a_url() {
        let mut p = Problems::default();
        assert!(matches!(in_here(&mut p, None, None), StoreBackend::Sqlite));
        let got = in_here(
            &mut p,
            Some("postgres"),
            Some(postgres(Some(
                "postgres://usher:secret@127.0.0.1:5432/usher",
            ))),
        );
        assert!(p.0.is_empty(), "{:?}", p.0);
        let StoreBackend::Postgres(pg) = got else {
            panic!("postgres")
        };
        assert_eq!((pg.pool_size, pg.timeout), (8, Duration::from_secs(5)));
        assert!(
            !format!("{pg:?}").contains("secret"),
            "the password is never printed"
        );
    }

    #[test]
    fn bad_store_settings_are_named_by_key_without_the_password() {
        let mut p = Problems::default();
        in_here(&mut p, Some("mysql"), None);
        in_here(&mut p, Some("postgres"), None);
        in_here(&mut p, None, Some(postgres(Some("postgres://a@b/c"))));
        in_here(
            &mut p,
            Some("postgres"),
            Some(PostgresFile {
                url: Some("postgres://u:hunter2@127.0.0.1:notaport/db".into()),
                pool_size: Some(0),
                timeout: Some("1ms".into()),
                ..Default::default()
            }),
        );
        in_here(
            &mut p,
            Some("postgres"),
            Some(PostgresFile {
                url_env: Some("USHER_TEST_NO_SUCH_VARIABLE".into()),
                ..Default::default()
            }),
        );
        let all = p.0.join("\n");
        for key in [
            "store.backend = \"mysql\"",
            "store.postgres: backend \"postgres\" needs",
            "store.postgres: set store.backend",
            "store.postgres.url: not a PostgreSQL URL",
            "store.postgres.pool_size = \"0\"",
            "store.postgres.timeout = \"1ms\"",
            "store.postgres.url_env = \"USHER_TEST_NO_SUCH_VARIABLE\"",
        ] {
            assert!(all.contains(key), "{key} in:\n{all}");
        }
        assert!(!all.contains("hunter2"), "{all}");
    }
}
