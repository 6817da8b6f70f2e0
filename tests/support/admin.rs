//! Calling the admin API and the PPV facade of a running usher.

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use super::{read, Reply, Usher, ADMIN_TOKEN};

/// Anything with an admin listener: a usher process or an in-process usher.
pub trait HasAdmin {
    /// The admin listener's base URL.
    fn admin_url(&self) -> &str;
}

impl HasAdmin for Usher {
    fn admin_url(&self) -> &str {
        self.admin.as_deref().expect("admin listener")
    }
}

/// Calls the JSON admin API with the test credential.
pub async fn api(
    usher: &impl HasAdmin,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    api_as(usher, ADMIN_TOKEN, method, path, body).await
}

/// Calls the JSON admin API with `token`.
pub async fn api_as(
    usher: &impl HasAdmin,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let url = format!("{}{path}", usher.admin_url());
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = Request::builder()
        .method(method)
        .uri(url)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let reply = send(request).await;
    let json = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    (reply.status.as_u16(), json)
}

/// GETs a facade URL (`/api/ppv/...?...`); `apikey` is added.
pub async fn facade(usher: &impl HasAdmin, path_and_query: &str) -> Reply {
    let sep = if path_and_query.contains('?') {
        '&'
    } else {
        '?'
    };
    let url = format!(
        "{}{path_and_query}{sep}apikey={ADMIN_TOKEN}",
        usher.admin_url()
    );
    let request = Request::get(url).body(Full::new(Bytes::new())).unwrap();
    send(request).await
}

/// POSTs a form to the admin listener.
pub async fn post_form(usher: &impl HasAdmin, path: &str, form: &str) -> Reply {
    let url = format!("{}{path}", usher.admin_url());
    let request = Request::post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(form.to_owned())))
        .unwrap();
    send(request).await
}

/// Sends one request to the admin listener and reads the whole answer.
pub async fn send(request: Request<Full<Bytes>>) -> Reply {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let response =
        tokio::time::timeout(std::time::Duration::from_secs(10), client.request(request))
            .await
            .expect("admin answers within 10 s")
            .expect("admin request goes through");
    read(response).await
}

/// The text of the first `<name>…</name>` element in an XML body.
pub fn xml_text(body: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = body.find(&open)? + open.len();
    let end = start + body[start..].find(&format!("</{name}>"))?;
    Some(
        body[start..end]
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}
