//! The demo: with a `[demo]` section, `serve` makes sure the demo stream is sold (a product,
//! its media and a purchase for the demo subject, created once and kept in the store) and
//! prints a URL whose ticket plays it with rights checks on.

use crate::admin::fields::Fields;
use crate::admin::ops::{self, AdminError};
use crate::proxy::State;
use crate::rights::model::PurchaseStatus;
use crate::rights::store::{Page, PurchaseFilter};
use crate::ticket::{self, Claims, Kind};

/// `Ok` when the write happened or its object was already there.
fn exists<T>(result: Result<T, AdminError>) -> Result<(), AdminError> {
    match result {
        Ok(_) | Err(AdminError::Conflict(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Code of the demo product and media.
pub const DEMO_CODE: &str = "demo";

/// Sells the demo stream to the demo subject if that has not happened yet, and returns the
/// playable URL (`None` without a `[demo]` section or a public listener).
///
/// # Errors
/// When the store cannot be written.
pub async fn seed(state: &State) -> Result<Option<String>, AdminError> {
    let config = state.config();
    let (Some(demo), Some(base)) = (&config.demo, state.public_url.get()) else {
        return Ok(None);
    };
    let fields = |pairs: &[(&str, &str)]| -> Fields {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    // Another process sharing the data directory may seed at the same moment: a conflict
    // means it is there already.
    if ops::get_product(state, DEMO_CODE).await.is_err() {
        exists(
            ops::create_product(
                state,
                &fields(&[
                    ("code", DEMO_CODE),
                    ("name", "Demo stream"),
                    ("description", "The bundled demo VOD"),
                ]),
            )
            .await,
        )?;
    }
    if ops::get_media(state, DEMO_CODE).await.is_err() {
        let playlist = demo
            .play_path
            .strip_prefix(demo.scope.as_str())
            .unwrap_or("master.m3u8");
        exists(
            ops::create_media(
                state,
                &fields(&[
                    ("code", DEMO_CODE),
                    ("title", "Demo"),
                    ("prefix", &demo.scope),
                    ("playlist", playlist),
                ]),
            )
            .await,
        )?;
    }
    ops::add_media(state, DEMO_CODE, DEMO_CODE).await?;
    let filter = PurchaseFilter {
        product: Some(DEMO_CODE.to_owned()),
        account: Some(demo.subject.clone()),
        status: Some(PurchaseStatus::Active),
        ..PurchaseFilter::default()
    };
    if ops::list_buyers(state, filter, Page::default())
        .await?
        .is_empty()
    {
        ops::add_buyer(
            state,
            &fields(&[
                ("code", DEMO_CODE),
                ("media", DEMO_CODE),
                ("account", &demo.subject),
                ("name", "Demo viewer"),
            ]),
        )
        .await?;
    }
    let settings = &config.token;
    let now = (state.clock)();
    let claims = Claims {
        sub: demo.subject.clone(),
        scope: demo.scope.clone(),
        nbf: now,
        exp: now + settings.ticket_ttl.as_secs(),
        dev: None,
        ip: None,
        sid: None,
        cap: 0,
        allow: Vec::new(),
        cls: None,
    };
    let ticket = ticket::sign(&settings.keys, Kind::Ticket, &claims);
    Ok(Some(format!(
        "{base}{}?{}={ticket}",
        demo.play_path, settings.ticket_param
    )))
}
