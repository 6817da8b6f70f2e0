//! Who may fetch this, in order: the credential (signature, window, scope, device,
//! address), the right (bought, in window, not revoked), the device's activation of the
//! purchase, and the session's place among the account's concurrent streams.
//!
//! ```text
//! device class: the credential's (ticket claim, or the session token's, fixed at the
//! playlist request) │ the class header, on a ticket that names none │ the default
//!
//! ticket  ─► rights ─► activation: device known │ bound now │ limit reached
//!                           (no device named: usher makes one up, sets it as its cookie)
//!                           (limit reached + ip_recovery + a live session of this
//!                            purchase from the same network ─► move its activation)
//!                      ─► session: join this device's live one │ start under the limits
//!                           (refuse: concurrency_limit │ replace_oldest: end the oldest)
//! session ─► rights ─► session: touch (throttled) │ replaced/ended: refuse │ unknown: adopt
//!   (live under a purchase that no longer grants, here or on the node it comes from:
//!    refuse, as past its cap)
//!   (expired, its session not live here: replaced/ended (here, or in Redis): refuse │
//!    live on another node (shared sessions) ─► adopt)
//! foreign ─► (named: rights ─► session, as a session token; on another named device than
//!            its session's: that device's own session, taken up under the limits)
//!            │ (unnamed: no rights check)
//! nothing ─► playlist of content with a preview: preview grant │ 401
//! ```

use std::sync::Arc;

use http::HeaderMap;

mod activation;
mod renew;
mod start;

use super::respond::ProxyError;
use super::State;
use crate::access::{self, foreign, Denied, Grant, Presented};
use crate::config::foreign::Format;
use crate::config::Config;
use crate::path::ObjectKind;
use crate::rights::model::DeviceClass;
use crate::rights::FirstPlayWrite;
use crate::sessions::{Start, Touch};
use crate::ticket::{Claims, Kind, TicketError};
use start::{adopt, start_session, TakeUp, TicketRequest};

/// A session token signed by a key a reload retired: accepted as before the retirement
/// (while unexpired, or while its session is live, here or, with shared sessions, on
/// another node), so players keep the playlist URIs their master gave them through a
/// rotation. Only tokens it could have signed before the retirement: no ticket, and no
/// expiry later than the retirement plus the session-token lifetime, so a retired key opens
/// nothing new even in other hands. With the purchase its session plays under on the node
/// it is taken up from, as [`renew::live_elsewhere`] answers it.
///
/// `Ok(None)` when no retired key signed it, or what it signed is a ticket or expires past
/// its retirement's bound (the caller's `unknown_key` stands).
///
/// # Errors
/// Once a retired key's signature holds, what that key's check refuses, as for a current
/// key's token: `expired` (its session over everywhere), `session_ended`,
/// `session_replaced`, the scope, device or address refusals; `Unavailable` as
/// [`renew::live_elsewhere`].
async fn retired_session(
    state: &State,
    skew: u64,
    path: &str,
    presented: &Presented<'_>,
    now: u64,
) -> Result<Option<(Grant, Option<String>)>, ProxyError> {
    let Some(raw) = presented.session else {
        return Ok(None);
    };
    let session_only = Presented {
        ticket: None,
        ..*presented
    };
    let alive = |sid: &str| state.sessions.is_live(sid, now);
    let rights_follow = state.rights.is_some();
    for retired in state.retired_keys().iter() {
        let ring = &retired.ring;
        // Not this key's signature: the next. (Remembered: `decide` below, and the
        // token's next requests, find it verified.)
        let Ok((kind, claims)) = crate::ticket::verify_signature_remembered(ring, raw) else {
            continue;
        };
        // A ticket, or an expiry the key could not have signed before it was retired:
        // unknown, as to a current key.
        if kind != Kind::Session || claims.exp > retired.latest_exp {
            return Ok(None);
        }
        return match access::decide(ring, skew, path, &session_only, now, &alive, rights_follow) {
            Ok(grant) => Ok(Some((grant, None))),
            Err(expired @ Denied::Credential(TicketError::Expired { .. })) => {
                // Boxed as in `authorize`: rare, and it may wait on Redis.
                let elsewhere = Box::pin(renew::live_elsewhere(
                    state,
                    ring,
                    skew,
                    path,
                    &session_only,
                    now,
                    rights_follow,
                ))
                .await?;
                match elsewhere {
                    Some((grant, live)) => Ok(Some((grant, live.purchase))),
                    None => Err(expired.into()),
                }
            }
            Err(denied) => Err(denied.into()),
        };
    }
    Ok(None)
}

/// Subject of preview tokens; `~` is outside what account ids may use, so no buyer holds it.
pub const PREVIEW_SUBJECT: &str = "~preview";

/// Decides whether the request may be served, and under which grant. usher's session
/// token comes first, then a ticket if the route accepts usher's format, then the
/// foreign credentials the route accepts (see [`crate::access::foreign`]). `instant`: the
/// request's moment on the monotonic clock.
///
/// A session token refused for itself (expired with its session over, past its cap, signed
/// by a key no longer known, out of scope, from another device or network) does not hide a
/// ticket in the query of a playlist request (the play URL opened again): the request is
/// decided again by that ticket ([`by_ticket_instead`]). The session cookie lasts as long
/// as the browser, so a viewer coming back with the play URL would otherwise be refused
/// until the browser forgot the cookie.
///
/// # Errors
/// The refusal, from whichever check refused first (the ticket's, when it was tried).
pub async fn authorize(
    state: &State,
    config: &Config,
    kind: ObjectKind,
    presented: &Presented<'_>,
    foreign: &foreign::Carried<'_>,
    facts: &foreign::Facts<'_>,
    instant: std::time::Instant,
) -> Result<Grant, ProxyError> {
    let decided = authorize_as(state, config, kind, presented, foreign, facts, instant).await;
    match decided {
        Err(ProxyError::Denied(_)) if kind == ObjectKind::Playlist && presented.ticket_in_query => {
            // Boxed: rare, and its future is as large as the first's.
            Box::pin(by_ticket_instead(
                state, config, kind, presented, foreign, facts, instant, decided,
            ))
            .await
        }
        decided => decided,
    }
}

/// [`authorize`] by the ticket of `presented`, whose session token was `refused` for
/// itself, when the route accepts usher's format. Not when the token's session was ended
/// by the operator or replaced by another stream (as this node or Redis holds it): that
/// refusal stands, so that two devices under `replace_oldest` do not take the stream from
/// each other in turn.
#[allow(clippy::too_many_arguments)] // `authorize`'s own, and the refusal
async fn by_ticket_instead(
    state: &State,
    config: &Config,
    kind: ObjectKind,
    presented: &Presented<'_>,
    foreign: &foreign::Carried<'_>,
    facts: &foreign::Facts<'_>,
    instant: std::time::Instant,
    refused: Result<Grant, ProxyError>,
) -> Result<Grant, ProxyError> {
    let Some(raw) = presented.session else {
        return refused;
    };
    if !config.accepts_for(facts.path).contains(&Format::Usher) {
        return refused;
    }
    let retired = state.retired_keys();
    let rings = std::iter::once(&config.token.keys).chain(retired.iter().map(|r| &*r.ring));
    let mut signed =
        rings.filter_map(|ring| crate::ticket::verify_signature_remembered(ring, raw).ok());
    if let Some((Kind::Session, claims)) = signed.next() {
        if let Some(sid) = claims.sid.as_deref() {
            if let Some(over) = state.sessions.refusal(sid) {
                return Err(over.into());
            }
            let now = (state.clock)();
            state
                .sessions
                .is_live_elsewhere(&claims.sub, sid, now)
                .await?;
        }
    }
    let ticket = Presented {
        session: None,
        ..*presented
    };
    authorize_as(state, config, kind, &ticket, foreign, facts, instant).await
}

/// [`authorize`] by the first credential `presented` holds.
async fn authorize_as(
    state: &State,
    config: &Config,
    kind: ObjectKind,
    presented: &Presented<'_>,
    foreign: &foreign::Carried<'_>,
    facts: &foreign::Facts<'_>,
    instant: std::time::Instant,
) -> Result<Grant, ProxyError> {
    let (path, headers) = (facts.path, facts.headers);
    let settings = &config.token;
    let now = (state.clock)();
    let skew = settings.clock_skew.as_secs();
    let alive = |sid: &str| state.sessions.is_live(sid, now);
    let accepts = config.accepts_for(path);
    let usher = Presented {
        ticket: presented
            .ticket
            .filter(|_| accepts.contains(&Format::Usher)),
        ..*presented
    };
    let rights_follow = state.rights.is_some();
    // The purchase a session token's session plays under on another node, when it is
    // taken up from there: this node's registry does not know it yet.
    let mut elsewhere_under = None;
    // Whether Redis was asked for it already (the answer may have been none).
    let mut asked_elsewhere = false;
    // Whether a foreign credential opened it: as a ticket does, it may start a rental.
    let mut foreign_credential = false;
    let mut grant = match access::decide(
        &settings.keys,
        skew,
        path,
        &usher,
        now,
        &alive,
        rights_follow,
    ) {
        // A ticket passed where a session token goes (`?token=`, the session cookie) is
        // still a ticket: the route must accept usher's format.
        Ok(grant) if grant.kind == Kind::Ticket && !accepts.contains(&Format::Usher) => {
            return Err(Denied::NotAccepted.into())
        }
        Ok(grant) => grant,
        Err(Denied::NoCredential) => {
            match foreign::decide(&config.formats, accepts, foreign, facts, now, skew) {
                Ok(grant) => {
                    foreign_credential = true;
                    grant
                }
                Err(Denied::NoCredential) if presented.ticket.is_some() => {
                    return Err(Denied::NotAccepted.into())
                }
                Err(Denied::NoCredential) if kind == ObjectKind::Playlist => {
                    return preview_grant(state, config, path, now)
                        .ok_or(Denied::NoCredential.into());
                }
                Err(denied) => return Err(denied.into()),
            }
        }
        Err(denied @ Denied::Credential(TicketError::UnknownKey(_))) => {
            let (grant, under) = Box::pin(retired_session(state, skew, path, presented, now))
                .await?
                .ok_or(denied)?;
            asked_elsewhere = under.is_some();
            elsewhere_under = under;
            grant
        }
        Err(denied @ Denied::Credential(TicketError::Expired { .. })) => {
            // Boxed: rare (an expired token whose session is not live here), and it may
            // wait on Redis; held inline, every request's future would carry its room.
            let ring = &settings.keys;
            let (grant, live) = Box::pin(renew::live_elsewhere(
                state,
                ring,
                skew,
                path,
                &usher,
                now,
                rights_follow,
            ))
            .await?
            .ok_or(denied)?;
            asked_elsewhere = true;
            elsewhere_under = live.purchase;
            grant
        }
        Err(denied) => return Err(denied.into()),
    };
    let checked = access::rights_apply(&grant.claims);
    let Some(rights) = state.rights.as_ref().filter(|_| checked) else {
        if checked {
            // No rights to check (`rights.source = "none"`): sessions are still kept, with no
            // limits, so a session token outlives its expiry while its session plays, as
            // with rights (a player reloads the playlist URI its master gave it).
            keep_session(state, &mut grant, presented, foreign_credential, now)?;
        }
        return Ok(grant);
    };
    let class = device_class(config, &grant.claims, headers);
    // Decided once: the session token minted from this grant carries it on (a session
    // token already names it, and its claims stay shared).
    if grant.claims.cls != Some(class) {
        Arc::make_mut(&mut grant.claims).cls = Some(class);
    }
    let entitled = rights
        .check(&grant.claims.sub, path, class, now, instant)
        .await?;
    // The device the request names, else the credential's (borrowed: a session's segment
    // request allocates nothing for it).
    let device = presented.device.or(grant.claims.dev.as_deref());
    let entitled = match grant.kind {
        Kind::Ticket => {
            let device = device.map(str::to_owned);
            // Boxed: starting a session is a playlist request's work, and its future is
            // large; held inline, every segment request's future would carry its room.
            let request = TicketRequest {
                config,
                kind,
                presented,
                headers,
                now,
            };
            Box::pin(start_session(
                state, &request, &entitled, &mut grant, device,
            ))
            .await?
        }
        Kind::Session => {
            let sid = grant.claims.sid.as_deref().unwrap_or_default();
            if entitled.others.is_some()
                && elsewhere_under.is_none()
                && !state.sessions.is_live(sid, now)
            {
                let account = &grant.claims.sub;
                elsewhere_under =
                    Box::pin(renew::under_elsewhere(state, account, sid, now)).await?;
                asked_elsewhere = true;
            }
            let plays_under = |purchase: &str| {
                state.sessions.plays_under(sid, purchase)
                    || elsewhere_under.as_deref() == Some(purchase)
            };
            // When several purchases grant, the session goes on under the one it started
            // under (its end caps its tokens, its limits adopt it), not the preferred one.
            // Only then is the registry asked: a single purchase costs no lookup.
            let entitled = match &entitled.others {
                Some(others) => others
                    .iter()
                    .find(|e| plays_under(&e.purchase))
                    .cloned()
                    .unwrap_or(entitled),
                None => entitled,
            };
            // Past its cap, a token is carried on only by the purchase it was minted under
            // (extended since): another purchase of the account starts with its own ticket,
            // its own activation check and its own first play. So is a live session (here,
            // or on the node it is taken up from) whose purchase no longer grants before
            // its token is past the cap (within the clock skew, or a purchase without an
            // end that was revoked): only a session taken up afresh (idled out, or a
            // foreign credential's first request) starts under the purchase decided now.
            let capped = grant.claims.past_cap(now, skew);
            let purchase = &*entitled.purchase;
            let expired = || -> ProxyError {
                let expired = TicketError::Expired {
                    at: grant.claims.exp,
                };
                Denied::Credential(expired).into()
            };
            let moved = elsewhere_under.as_deref().is_some_and(|p| p != purchase);
            if moved || (capped && !plays_under(purchase)) {
                return Err(expired());
            }
            // Live here under another purchase: refused the same way (one lookup, the
            // touch's). A foreign credential's session recorded on another named device:
            // this device's own session instead (a second lookup, only then).
            let named = device.filter(|_| foreign_credential);
            let mut own = None;
            let mut touched = state.sessions.touch(sid, Some(purchase), named, now)?;
            match (touched, named) {
                (Touch::OnAnotherDevice, Some(named)) => {
                    let sid = own.insert(crate::sessions::device_session(sid, named));
                    touched = state.sessions.touch(sid, Some(purchase), None, now)?;
                }
                // The token's session is not here, but this device's own may be (it took
                // it up here, the first device playing on another node or gone): one more
                // lookup, on a path that would otherwise take it up afresh every request.
                (Touch::NotHere, Some(named)) => {
                    let candidate = crate::sessions::device_session(sid, named);
                    let again = state
                        .sessions
                        .touch(&candidate, Some(purchase), None, now)?;
                    if again != Touch::NotHere {
                        own = Some(candidate);
                        touched = again;
                    }
                }
                _ => {}
            }
            match touched {
                Touch::Live => {}
                Touch::UnderAnother => return Err(expired()),
                Touch::OnAnotherDevice => unreachable!("touched with a device only once"),
                // Boxed for the same reason: an adoption is rare.
                Touch::NotHere => {
                    // Nor does a session taken up afresh start a rental's hours (one of a
                    // revoked pass, idled out with its uncapped token still valid): only a
                    // ticket, a foreign credential, or a session that played under the
                    // rental here or plays under it on another node (its first play
                    // written there, or not yet) does.
                    if entitled.first_play.is_some()
                        && !foreign_credential
                        && !state.sessions.plays_under(sid, purchase)
                    {
                        let under = match elsewhere_under.take() {
                            Some(under) => Some(under),
                            None if asked_elsewhere => None,
                            None => {
                                let account = &grant.claims.sub;
                                Box::pin(renew::under_elsewhere(state, account, sid, now)).await?
                            }
                        };
                        if under.as_deref() != Some(purchase) {
                            return Err(expired());
                        }
                    }
                    let taking = own.as_deref().unwrap_or(sid);
                    let take_up = TakeUp {
                        sid: taking,
                        account: &grant.claims.sub,
                        device,
                        per_device: foreign_credential,
                    };
                    let session =
                        Box::pin(adopt(state, config, &entitled, &take_up, presented, now)).await?;
                    own = Some(session.sid.clone()).filter(|taken| taken != sid);
                }
            }
            if let Some(own) = own {
                Arc::make_mut(&mut grant.claims).sid = Some(own);
            }
            entitled
        }
    };
    grant.right_until = Some(entitled.until.unwrap_or(u64::MAX));
    // Only now, with the device, its activation and the session admitted: a refused
    // request starts no rental's hours. They run from now, not from when the decision
    // was made (a cached one names the rentals a ticket may fall back to), once this
    // request wrote the first play. Written before (by another node), or not written
    // (failed, or not tried during a back-off or beside another write of it), the
    // decision's end stays: no later than the real one but for the moments between this
    // decision and a write that landed meanwhile, and an early cap is harmless while the
    // session plays (every request of it is checked).
    if let Some(first_play) = entitled.first_play {
        let account = &grant.claims.sub;
        let written = Box::pin(rights.record_first_play(account, &entitled, now)).await;
        if written == FirstPlayWrite::Written {
            grant.right_until = Some(first_play.ends(now));
        }
    }
    Ok(grant)
}

/// Session bookkeeping without rights: a ticket starts a session, a session token keeps
/// its session alive (or adopts it again after a restart or an idle timeout). A foreign
/// credential's session recorded on another named device: this device's own, as with
/// rights.
fn keep_session(
    state: &State,
    grant: &mut Grant,
    presented: &Presented<'_>,
    foreign_credential: bool,
    now: u64,
) -> Result<(), ProxyError> {
    let device = presented.device.or(grant.claims.dev.as_deref());
    let named = device.filter(|_| foreign_credential);
    let sid = match grant.kind {
        Kind::Session => match grant.claims.sid.clone() {
            Some(sid) => match (state.sessions.touch(&sid, None, named, now)?, named) {
                (Touch::Live, _) => return Ok(()),
                (Touch::OnAnotherDevice, Some(named)) => {
                    let own = crate::sessions::device_session(&sid, named);
                    if state.sessions.touch(&own, None, None, now)? == Touch::Live {
                        Arc::make_mut(&mut grant.claims).sid = Some(own);
                        return Ok(());
                    }
                    Some(own)
                }
                _ => Some(sid),
            },
            None => return Ok(()),
        },
        Kind::Ticket => None,
    };
    let start = Start {
        sid: sid.as_deref(),
        account: &grant.claims.sub,
        purchase: None,
        product: None,
        device,
        ip: presented.client_ip,
        taking_over: None,
        per_device: foreign_credential,
    };
    let session = state.sessions.start(
        start,
        &crate::sessions::Limits::default(),
        now,
        crate::sessions::new_id,
    )?;
    Arc::make_mut(&mut grant.claims).sid = Some(session.sid.clone());
    Ok(())
}

/// A grant for a viewer without a ticket, on a playlist of content that has a preview:
/// the playlist is rewritten in preview mode, so only its first seconds play.
fn preview_grant(state: &State, config: &Config, path: &str, now: u64) -> Option<Grant> {
    let media = state.rights.as_ref()?.media_for(path)?;
    (media.preview_seconds > 0).then(|| Grant {
        kind: Kind::Session,
        claims: std::sync::Arc::new(Claims {
            sub: PREVIEW_SUBJECT.to_owned(),
            scope: media.prefix.clone(),
            nbf: 0,
            exp: now + config.token.session_ttl.as_secs(),
            dev: None,
            ip: None,
            sid: None,
            cap: 0,
            allow: vec![path.to_owned()],
            cls: None,
        }),
        right_until: None,
        minted_device: None,
    })
}

/// The device class a request plays as: the one its credential names (a ticket that
/// names one, or the session token minted at the playlist request), else the class named
/// in `rights.device_class_header`, else the default. A header never overrides a class
/// the credential names, so it can neither open a class the ticket does not grant nor
/// change the class of a session's segments.
fn device_class(config: &Config, claims: &Claims, headers: &HeaderMap) -> DeviceClass {
    let rights = &config.rights;
    claims.cls.unwrap_or_else(|| {
        headers
            .get(&rights.device_class_header)
            .and_then(|v| v.to_str().ok())
            .and_then(DeviceClass::parse)
            .unwrap_or(rights.default_device_class)
    })
}
