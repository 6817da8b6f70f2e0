//! `usher admin …`: the common operator tasks, sent over HTTP to a running usher's JSON
//! admin API (`/api/v1/`, listed in [`crate::admin`]), authenticated with the admin token.
//!
//! Output contract, relied on by scripts:
//! - a command that creates or changes one thing prints its identifier on one line
//!   (product and media codes, purchase hashes, account ids);
//! - `buyer add` prints exactly two lines: the purchase hash, then the play URL, or the
//!   bare ticket when the purchase does not resolve to one media;
//! - `product list`, `buyer list`, `device list` and `session list` print one JSON object
//!   per line (JSON Lines), all pages;
//! - every failure is one line on stderr, `usher: <field>: <reason>` for a refused field or
//!   `usher: <message>` otherwise, and exit status 1 (usage errors: clap's status 2).

use std::io::Write;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

mod args;
mod devices;

pub use args::{
    AccountCommand, AdminArgs, AdminCommand, BuyerAdd, BuyerCommand, DeviceCommand, MediaAdd,
    MediaCommand, ProductCommand, ProductCreate, SessionCommand,
};

/// Where the admin API is when neither `--url` nor `USHER_ADMIN_URL` says.
pub const DEFAULT_URL: &str = "http://127.0.0.1:9090";
/// How long one call (request and whole answer) may take.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Page size for listings (the API's largest).
const PAGE: usize = 1000;

/// Why an admin command failed; printed as `usher: <this>`.
#[derive(Debug, thiserror::Error)]
pub enum AdminCliError {
    /// No token given.
    #[error("the admin token is required: --token TOKEN or USHER_ADMIN_TOKEN")]
    NoToken,
    /// The token cannot go into a header.
    #[error("--token: not usable in an HTTP header")]
    BadToken,
    /// `--url` is not an admin base URL.
    #[error("--url {url}: {reason}")]
    BadUrl {
        /// As given.
        url: String,
        /// What is expected.
        reason: &'static str,
    },
    /// Nothing answered.
    #[error("cannot reach the admin API at {url}: {reason}")]
    Unreachable {
        /// The base URL.
        url: String,
        /// The connection error chain.
        reason: String,
    },
    /// No whole answer in time.
    #[error("no answer from the admin API at {url} within {}s", TIMEOUT.as_secs())]
    Timeout {
        /// The base URL.
        url: String,
    },
    /// 401 from the admin API.
    #[error(
        "the admin API refused the token (401 unauthorized): check --token or USHER_ADMIN_TOKEN"
    )]
    Unauthorized,
    /// 400: a field was refused.
    #[error("{field}: {reason}")]
    Invalid {
        /// The API's field name.
        field: String,
        /// What is wrong and what is expected.
        reason: String,
    },
    /// 404 for a thing.
    #[error("{0} not found")]
    NotFound(String),
    /// 409.
    #[error("{0} already exists")]
    Conflict(String),
    /// 409: the product cannot be sold now.
    #[error("product {product} cannot be sold: {reason}")]
    NotSellable {
        /// The product code.
        product: String,
        /// Why (`product_inactive`, `product_unavailable`, `window_ended`).
        reason: String,
    },
    /// The media code exists with another prefix.
    #[error("media {code} already exists with prefix {existing}, not {wanted}")]
    MediaMismatch {
        /// The media code.
        code: String,
        /// Its stored prefix.
        existing: String,
        /// The prefix asked for.
        wanted: String,
    },
    /// Any other refusal.
    #[error("the admin API answered {status}: {error}")]
    Api {
        /// HTTP status.
        status: u16,
        /// Its `error`, or a description of the body.
        error: String,
    },
    /// A 2xx answer without what it should hold.
    #[error("unexpected answer from the admin API: {0}")]
    Unexpected(String),
    /// Local failures: starting the runtime, writing stdout.
    #[error("local I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// A client for one usher's JSON admin API.
pub struct AdminClient {
    base: String,
    auth: HeaderValue,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl AdminClient {
    /// A client for the admin listener at `url` (`http://HOST:PORT`, optionally with a path
    /// prefix) presenting `token`.
    ///
    /// # Errors
    /// A URL that is not plain `http://`, or a token that cannot be a header.
    pub fn new(url: &str, token: &str) -> Result<Self, AdminCliError> {
        let base = url.trim_end_matches('/').to_owned();
        let bad = |reason| AdminCliError::BadUrl {
            url: url.to_owned(),
            reason,
        };
        let uri: http::Uri = base.parse().map_err(|_| bad("not a URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => return Err(bad("the admin listener speaks plain http://")),
            _ => return Err(bad("expected http://HOST:PORT")),
        }
        if uri.host().is_none() || uri.query().is_some() {
            return Err(bad("expected http://HOST:PORT"));
        }
        let auth = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| AdminCliError::BadToken)?;
        let http = Client::builder(TokioExecutor::new()).build_http();
        Ok(Self { base, auth, http })
    }

    /// One call to `/api/v1/{path}` (path and query, already encoded); the JSON of a 2xx.
    ///
    /// # Errors
    /// Connection failures, timeouts, and the API's refusals mapped to [`AdminCliError`].
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, AdminCliError> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}/api/v1/{path}", self.base))
            .header(AUTHORIZATION, self.auth.clone())
            // So the audit trail records this write as made with `usher admin`.
            .header("x-usher-interface", "cli")
            .header(USER_AGENT, concat!("usher-cli/", env!("CARGO_PKG_VERSION")));
        if body.is_some() {
            req = req.header(CONTENT_TYPE, "application/json");
        }
        let payload = body.map_or_else(Bytes::new, |v| Bytes::from(v.to_string()));
        let req = req
            .body(Full::new(payload))
            .map_err(|e| AdminCliError::Unexpected(e.to_string()))?;
        let exchange = async {
            let response = self.http.request(req).await.map_err(|e| chain(&e))?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| chain(&e))?;
            Ok::<_, String>((status, bytes.to_bytes()))
        };
        let (status, bytes) = tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| AdminCliError::Timeout {
                url: self.base.clone(),
            })?
            .map_err(|reason| AdminCliError::Unreachable {
                url: self.base.clone(),
                reason,
            })?;
        let value: Option<Value> = serde_json::from_slice(&bytes).ok();
        match value {
            Some(v) if status.is_success() => Ok(v),
            Some(v) => Err(refusal(status, &v)),
            None => Err(AdminCliError::Api {
                status: status.as_u16(),
                error: "not JSON: is --url usher's admin listener?".into(),
            }),
        }
    }

    /// Prints every item of a listing, one JSON object per line, following the pages.
    ///
    /// # Errors
    /// As [`AdminClient::call`], or when stdout cannot be written.
    pub async fn list_all(
        &self,
        what: &str,
        filters: &[(&str, &str)],
    ) -> Result<(), AdminCliError> {
        let mut query: String = filters
            .iter()
            .map(|(k, v)| format!("{k}={}&", encode(v)))
            .collect();
        query.push_str(&format!("limit={PAGE}"));
        for offset in (0..).step_by(PAGE) {
            let page = self
                .call(
                    Method::GET,
                    &format!("{what}?{query}&offset={offset}"),
                    None,
                )
                .await?;
            let Some(items) = page.get("items").and_then(Value::as_array) else {
                return Err(AdminCliError::Unexpected(format!("{what}: no items")));
            };
            for item in items {
                emit(&item.to_string())?;
            }
            if items.len() < PAGE {
                break;
            }
        }
        Ok(())
    }
}

/// The API's error document as an [`AdminCliError`].
fn refusal(status: StatusCode, v: &Value) -> AdminCliError {
    let text = |key: &str| v.get(key).and_then(Value::as_str).unwrap_or("").to_owned();
    match text("error").as_str() {
        "unauthorized" if status == StatusCode::UNAUTHORIZED => AdminCliError::Unauthorized,
        "invalid" => AdminCliError::Invalid {
            field: text("field"),
            reason: text("reason"),
        },
        "not_found" => AdminCliError::NotFound(text("what")),
        "not_sellable" => AdminCliError::NotSellable {
            product: text("product"),
            reason: text("reason"),
        },
        "idempotency_key_reused" => AdminCliError::Invalid {
            field: text("field"),
            reason: text("reason"),
        },
        "conflict" => AdminCliError::Conflict(text("what")),
        // Only `product delete` meets it here, whose flag is `--force`, not the API's.
        "has_buyers" => AdminCliError::Api {
            status: status.as_u16(),
            error: format!(
                "has_buyers: {}",
                crate::admin::ops::has_buyers_text(
                    &text("what"),
                    v.get("buyers").and_then(Value::as_u64).unwrap_or(0),
                    false,
                    "--force",
                )
            ),
        },
        "" => AdminCliError::Api {
            status: status.as_u16(),
            error: "no error field: is --url usher's admin listener?".into(),
        },
        error => AdminCliError::Api {
            status: status.as_u16(),
            error: match text("reason").as_str() {
                "" => error.to_owned(),
                reason => format!("{error}: {reason}"),
            },
        },
    }
}

/// An error and its sources, `a: b: c`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// Percent-encodes a path segment or query value.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'@' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Prints one line on stdout.
fn emit(line: &str) -> Result<(), AdminCliError> {
    writeln!(std::io::stdout().lock(), "{line}").map_err(AdminCliError::from)
}

/// A request body from command-line values (unset ones are `null`, which the API ignores).
fn to_json(values: &impl serde::Serialize) -> Result<Value, AdminCliError> {
    serde_json::to_value(values).map_err(|e| AdminCliError::Unexpected(e.to_string()))
}

/// A text field of an answer.
fn field(v: &Value, key: &str) -> Result<String, AdminCliError> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| AdminCliError::Unexpected(format!("no {key} in {v}")))
}

/// Runs `usher admin …` on its own small runtime, returning the exit status.
pub fn run(args: AdminArgs) -> i32 {
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(AdminCliError::from)
        .and_then(|runtime| runtime.block_on(execute(args)));
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("usher: {e}");
            1
        }
    }
}

/// Resolves the options and runs one subcommand.
///
/// # Errors
/// Whatever stopped it, to be printed.
pub async fn execute(args: AdminArgs) -> Result<(), AdminCliError> {
    let env = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
    let url = args
        .url
        .or_else(|| env("USHER_ADMIN_URL"))
        .unwrap_or_else(|| DEFAULT_URL.to_owned());
    let token = args
        .token
        .or_else(|| env("USHER_ADMIN_TOKEN"))
        .ok_or(AdminCliError::NoToken)?;
    let api = AdminClient::new(&url, &token)?;
    match args.command {
        AdminCommand::Product(ProductCommand::Create(p)) => {
            let body = to_json(&p)?;
            let product = api.call(Method::POST, "products", Some(&body)).await?;
            emit(&field(&product, "code")?)
        }
        AdminCommand::Product(ProductCommand::List) => api.list_all("products", &[]).await,
        AdminCommand::Product(ProductCommand::Delete { code, force }) => {
            let force = if force { "?force=true" } else { "" };
            let path = format!("products/{}{force}", encode(&code));
            api.call(Method::DELETE, &path, None).await?;
            emit(&code)
        }
        AdminCommand::Media(MediaCommand::Add(m)) => media_add(&api, *m).await,
        AdminCommand::Buyer(BuyerCommand::Add(b)) => {
            let body = to_json(&b)?;
            let sold = api.call(Method::POST, "buyers", Some(&body)).await?;
            let hash = field(&sold, "hash")?;
            let second = match field(&sold, "play_url") {
                Ok(url) => url,
                Err(_) => {
                    eprintln!(
                        "usher: no play URL (name one media with --media); line 2 is the ticket"
                    );
                    field(&sold, "ticket")?
                }
            };
            emit(&format!("{hash}\n{second}"))
        }
        AdminCommand::Buyer(BuyerCommand::List {
            product,
            email,
            account,
        }) => {
            let mut filters = vec![("product", product.as_str())];
            filters.extend(email.as_deref().map(|e| ("email", e)));
            filters.extend(account.as_deref().map(|a| ("account", a)));
            api.list_all("buyers", &filters).await
        }
        AdminCommand::Buyer(BuyerCommand::Revoke { hash }) => {
            let path = format!("buyers/{}/revoke", encode(&hash));
            api.call(Method::POST, &path, None).await?;
            emit(&hash)
        }
        AdminCommand::Buyer(BuyerCommand::Delete { hash }) => {
            let path = format!("buyers/{}", encode(&hash));
            api.call(Method::DELETE, &path, None).await?;
            emit(&hash)
        }
        AdminCommand::Account(command) => {
            let (id, enabled) = match command {
                AccountCommand::Disable { id } => (id, false),
                AccountCommand::Enable { id } => (id, true),
            };
            let path = format!("accounts/{}", encode(&id));
            let body = json!({ "enabled": enabled });
            api.call(Method::PUT, &path, Some(&body)).await?;
            emit(&id)
        }
        AdminCommand::Device(command) => devices::device(&api, command).await,
        AdminCommand::Session(command) => devices::session(&api, command).await,
    }
}

/// `media add`: the product must exist; the media is created unless its code exists with
/// the same prefix; then it is linked (linking twice is harmless).
async fn media_add(api: &AdminClient, m: MediaAdd) -> Result<(), AdminCliError> {
    let product = format!("products/{}", encode(&m.product));
    api.call(Method::GET, &product, None).await?;
    match api
        .call(Method::GET, &format!("media/{}", encode(&m.code)), None)
        .await
    {
        Ok(existing) => {
            let prefix = field(&existing, "prefix")?;
            if prefix != m.prefix {
                return Err(AdminCliError::MediaMismatch {
                    code: m.code,
                    existing: prefix,
                    wanted: m.prefix,
                });
            }
        }
        Err(AdminCliError::NotFound(_)) => {
            let body = to_json(&m)?;
            api.call(Method::POST, "media", Some(&body)).await?;
        }
        Err(e) => return Err(e),
    }
    let body = json!({ "media": m.code });
    api.call(Method::POST, &format!("{product}/media"), Some(&body))
        .await?;
    emit(&m.code)
}
