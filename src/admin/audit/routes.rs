//! Which admin calls are writes, what they are called and where their target's id is:
//! one table entry per write route.

use http::Method;
use serde_json::Value;

use super::super::fields::Fields;

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
/// To record a new write route, add its line here.
#[rustfmt::skip]
pub const API_WRITES: &[(&str, &str, Write)] = &[
    ("POST", "products", write("product.create", Kind::Product, &[Answer("code")])),
    ("PATCH PUT", "products/*", write("product.update", Kind::Product, &[Segment(1)])),
    ("DELETE", "products/*", write("product.delete", Kind::Product, &[Segment(1)])),
    ("POST", "products/*/media", write("product.media.add", Kind::Link, &[Segment(1), Field("media")])),
    ("DELETE", "products/*/media/*", write("product.media.remove", Kind::Link, &[Segment(1), Segment(3)])),
    ("POST", "media", write("media.create", Kind::Media, &[Answer("code")])),
    ("PATCH PUT", "media/*", write("media.update", Kind::Media, &[Segment(1)])),
    ("DELETE", "media/*", write("media.delete", Kind::Media, &[Segment(1)])),
    ("POST", "buyers", write("purchase.create", Kind::Purchase, &[Answer("hash")])),
    ("PATCH PUT", "buyers/*", write("purchase.update", Kind::Purchase, &[Segment(1)])),
    ("DELETE", "buyers/*", write("purchase.delete", Kind::Purchase, &[Segment(1)])),
    ("POST", "buyers/*/revoke", write("purchase.revoke", Kind::Purchase, &[Segment(1)])),
    ("POST", "buyers/*/devices", write("device.add", Kind::Device, &[Segment(1), Answer("device")])),
    ("DELETE", "buyers/*/devices/*", write("device.free", Kind::Device, &[Segment(1), Segment(3)])),
    ("DELETE", "sessions/*", write("session.end", Kind::Session, &[Segment(1)])),
    ("POST", "rights/invalidate", write("rights.invalidate", Kind::Other("rights"), &[Field("subject")])),
    ("POST", "cache/purge", write("cache.purge", Kind::Other("cache"), &[Field("prefix")])),
    ("PUT PATCH", "accounts/*", write("account.update", Kind::Account, &[Segment(1)])),
];

/// The facade's writes: (method, write). `sendVideoTicket` is `/sendVideoTicket.php`.
#[rustfmt::skip]
pub const FACADE_WRITES: &[(&str, Write)] = &[
    ("create", write("product.create", Kind::Product, &[Answer("Code")])),
    ("update", write("product.update", Kind::Product, &[Field("code")])),
    ("delete", write("product.delete", Kind::Product, &[Field("code")])),
    ("addmedia", write("product.media.add", Kind::Link, &[Field("code"), Field("media")])),
    ("deletemedia", write("product.media.remove", Kind::Link, &[Field("code"), Field("media")])),
    ("addbuyer", write("purchase.create", Kind::Purchase, &[Answer("Hash")])),
    ("updatebuyer", write("purchase.update", Kind::Purchase, &[Field("hash")])),
    ("deletebuyer", write("purchase.delete", Kind::Purchase, &[Field("hash")])),
    ("updatecontacts", write("contacts.update", Kind::Contacts, &[])),
    ("sendVideoTicket", write("purchase.create", Kind::Purchase, &[Answer("hash")])),
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
}

impl Answered for super::super::api::Answer {
    fn field(&self, name: &str) -> Option<String> {
        match self.1.get(name)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
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
}

/// The target id from `parts`; `None` when a part is not there (yet).
pub(super) fn target(
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
        });
    }
    Some(id.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

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
