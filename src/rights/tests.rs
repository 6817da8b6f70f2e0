//! The cached check: hits, misses coalesced into one lookup, invalidation by admin writes,
//! and decisions never used past the right's own end.

use std::sync::Arc;
use std::time::Instant;

use super::*;
use crate::config::RightsSource;
use crate::rights::model::{
    HoursFrom, Media, Product, ProductType, Purchase, PurchaseStatus, Status,
};
use crate::rights::sqlite::SqliteStore;

const T0: u64 = 1_800_000_000;

fn config() -> RightsConfig {
    RightsConfig {
        grace: Duration::ZERO,
        source: RightsSource::Store,
        positive_ttl: Duration::from_secs(60),
        negative_ttl: Duration::from_secs(60),
        cache_capacity: 1000,
        first_play_retry: Duration::from_secs(5),
        device_class_header: http::HeaderName::from_static("x-device-class"),
        default_device_class: DeviceClass::Ott,
    }
}

fn setup(hours: Option<u32>) -> (tempfile::TempDir, Arc<dyn Store>, Rights, Metrics) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let product: Product = serde_json::from_value(serde_json::json!({
        "code": "P", "name": "Final", "hours": hours, "created_at": T0
    }))
    .unwrap();
    assert_eq!(
        (product.kind, product.status, product.hours_from),
        (ProductType::Single, Status::Active, HoursFrom::Purchase)
    );
    store.create_product(&product).unwrap();
    let media: Media =
        serde_json::from_value(serde_json::json!({"code": "final", "prefix": "/final/"})).unwrap();
    store.create_media(&media).unwrap();
    store.link("P", "final").unwrap();
    let purchase: Purchase = serde_json::from_value(serde_json::json!({
        "hash": "h1", "product": "P", "account": "alice", "purchased_at": T0
    }))
    .unwrap();
    store.create_purchase(&purchase).unwrap();
    let metrics = Metrics::new();
    let rights = Rights::new(store.clone(), Source::Store, &config(), metrics.clone()).unwrap();
    (dir, store, rights, metrics)
}

fn count(metrics: &Metrics, outcome: &str) -> u64 {
    match outcome {
        "hit" => metrics.rights_cache_hits.get(),
        _ => metrics.rights_cache.with_label_values(&[outcome]).get(),
    }
}

#[tokio::test]
async fn the_second_check_is_a_cache_hit() {
    let (_dir, _store, rights, metrics) = setup(None);
    let seg = "/final/hd/seg1.ts";
    assert!(rights
        .check("alice", seg, DeviceClass::Ott, T0 + 1, Instant::now())
        .await
        .is_ok());
    assert!(rights
        .check("alice", seg, DeviceClass::Ott, T0 + 2, Instant::now())
        .await
        .is_ok());
    assert_eq!((count(&metrics, "miss"), count(&metrics, "hit")), (1, 1));
    assert_eq!(
        rights
            .check("bob", seg, DeviceClass::Ott, T0, Instant::now())
            .await,
        Err(RightsDenied::NoRights)
    );
    assert_eq!(
        rights
            .check(
                "alice",
                "/unsold/a.ts",
                DeviceClass::Ott,
                T0,
                Instant::now()
            )
            .await,
        Err(RightsDenied::NoRights)
    );
}

#[tokio::test]
async fn concurrent_misses_for_one_key_make_one_lookup() {
    let (_dir, _store, rights, metrics) = setup(None);
    let rights = Arc::new(rights);
    let checks = (0..50).map(|_| {
        let rights = rights.clone();
        tokio::spawn(async move {
            rights
                .check(
                    "alice",
                    "/final/a.ts",
                    DeviceClass::Ott,
                    T0 + 1,
                    Instant::now(),
                )
                .await
        })
    });
    for check in checks {
        assert!(check.await.unwrap().is_ok());
    }
    assert_eq!(
        metrics.rights_lookups.with_label_values(&["granted"]).get(),
        1
    );
}

#[tokio::test]
async fn a_revocation_applies_to_the_next_check_despite_the_cache() {
    let (_dir, store, rights, _metrics) = setup(None);
    assert!(rights
        .check(
            "alice",
            "/final/a.ts",
            DeviceClass::Ott,
            T0 + 1,
            Instant::now()
        )
        .await
        .is_ok());
    let before = store.purchase("h1").unwrap().unwrap();
    let mut p = before.clone();
    p.status = PurchaseStatus::Revoked;
    store.replace_purchase(&before, &p, &[]).unwrap();
    // Without invalidation the cache would still say yes.
    assert!(rights
        .check(
            "alice",
            "/final/a.ts",
            DeviceClass::Ott,
            T0 + 2,
            Instant::now()
        )
        .await
        .is_ok());
    rights.invalidate_subject("alice");
    assert_eq!(
        rights
            .check(
                "alice",
                "/final/a.ts",
                DeviceClass::Ott,
                T0 + 3,
                Instant::now()
            )
            .await,
        Err(RightsDenied::Revoked)
    );
}

#[tokio::test]
async fn a_cached_yes_is_not_used_past_the_end_of_the_right() {
    let (_dir, _store, rights, _metrics) = setup(Some(2));
    let end = T0 + 2 * 3600;
    assert!(rights
        .check(
            "alice",
            "/final/a.ts",
            DeviceClass::Ott,
            end - 1,
            Instant::now()
        )
        .await
        .is_ok());
    assert_eq!(
        rights
            .check(
                "alice",
                "/final/a.ts",
                DeviceClass::Ott,
                end,
                Instant::now()
            )
            .await,
        Err(RightsDenied::Expired { at: end })
    );
}

#[tokio::test]
async fn media_written_later_is_found_after_invalidate_all() {
    let (_dir, store, rights, _metrics) = setup(None);
    let media: Media =
        serde_json::from_value(serde_json::json!({"code": "semi", "prefix": "/semi/"})).unwrap();
    store.create_media(&media).unwrap();
    store.link("P", "semi").unwrap();
    assert_eq!(
        rights
            .check("alice", "/semi/a.ts", DeviceClass::Ott, T0, Instant::now())
            .await,
        Err(RightsDenied::NoRights)
    );
    rights.invalidate_all().unwrap();
    assert!(rights
        .check("alice", "/semi/a.ts", DeviceClass::Ott, T0, Instant::now())
        .await
        .is_ok());
}

#[tokio::test]
async fn first_play_is_recorded_once() {
    let (_dir, store, _rights, _metrics) = setup(None);
    let mut product = store.product("P").unwrap().unwrap();
    product.hours = Some(24);
    product.hours_from = HoursFrom::FirstPlay;
    store.update_product(&product).unwrap();
    let rights = Rights::new(store.clone(), Source::Store, &config(), Metrics::new()).unwrap();
    let played = T0 + 86_400 * 3;
    let got = rights
        .check(
            "alice",
            "/final/a.ts",
            DeviceClass::Ott,
            played,
            Instant::now(),
        )
        .await
        .unwrap();
    assert_eq!(got.until, Some(played + 86_400));
    assert_eq!(
        store.purchase("h1").unwrap().unwrap().first_play_at,
        None,
        "the check alone records nothing: the request may still be refused"
    );
    rights.record_first_play("alice", &got, played).await;
    assert_eq!(
        store.purchase("h1").unwrap().unwrap().first_play_at,
        Some(played)
    );
    let again = rights
        .check(
            "alice",
            "/final/a.ts",
            DeviceClass::Ott,
            played + 100,
            Instant::now(),
        )
        .await
        .unwrap();
    assert_eq!(again.first_play, None);
    rights
        .record_first_play("alice", &again, played + 100)
        .await;
    assert_eq!(
        store.purchase("h1").unwrap().unwrap().first_play_at,
        Some(played),
        "not moved"
    );
    assert_eq!(
        rights
            .check(
                "alice",
                "/final/a.ts",
                DeviceClass::Ott,
                played + 86_400,
                Instant::now()
            )
            .await,
        Err(RightsDenied::Expired {
            at: played + 86_400
        })
    );
}

/// Item 1 of issue 11: adding a media inside a sold one takes no right away, and the
/// cached decisions follow the index as media come and go.
#[tokio::test]
async fn a_nested_media_keeps_the_enclosing_right_through_the_cache_and_its_invalidation() {
    let (_dir, store, rights, _metrics) = setup(None);
    let inner = "/final/180p/seg1.ts";
    assert!(rights
        .check("alice", inner, DeviceClass::Ott, T0 + 1, Instant::now())
        .await
        .is_ok());
    let m180: Media =
        serde_json::from_value(serde_json::json!({"code": "m180", "prefix": "/final/180p/"}))
            .unwrap();
    store.create_media(&m180).unwrap();
    let p180: Product =
        serde_json::from_value(serde_json::json!({"code": "P180", "name": "180p"})).unwrap();
    store.create_product(&p180).unwrap();
    store.link("P180", "m180").unwrap();
    let purchase: Purchase = serde_json::from_value(serde_json::json!({
        "hash": "h2", "product": "P180", "account": "bob", "purchased_at": T0
    }))
    .unwrap();
    store.create_purchase(&purchase).unwrap();
    rights.invalidate_all().unwrap();
    assert_eq!(rights.media_for(inner).unwrap().code, "m180");
    let alice = rights
        .check("alice", inner, DeviceClass::Ott, T0 + 2, Instant::now())
        .await;
    assert_eq!(alice.unwrap().purchase.as_ref(), "h1", "the right on final");
    let bob = rights
        .check("bob", inner, DeviceClass::Ott, T0 + 2, Instant::now())
        .await;
    assert_eq!(bob.unwrap().purchase.as_ref(), "h2");
    assert_eq!(
        rights
            .check(
                "bob",
                "/final/360p/seg1.ts",
                DeviceClass::Ott,
                T0 + 2,
                Instant::now()
            )
            .await,
        Err(RightsDenied::NoRights),
        "a right on the inner media covers only it"
    );
    // The enclosing media goes: its right no longer reaches inside, cached or not.
    store.delete_media("final", true).unwrap();
    rights.invalidate_all().unwrap();
    assert_eq!(
        rights
            .check("alice", inner, DeviceClass::Ott, T0 + 3, Instant::now())
            .await,
        Err(RightsDenied::NoRights)
    );
}

#[tokio::test]
async fn a_media_index_that_could_not_be_re_read_is_read_again_until_it_is() {
    let (dir, store, rights, metrics) = setup(None);
    let media: Media =
        serde_json::from_value(serde_json::json!({"code": "sequel", "prefix": "/sequel/"}))
            .unwrap();
    store.create_media(&media).unwrap();
    store.link("P", "sequel").unwrap();
    // The store cannot be read as the write's re-read runs (here: its media table gone
    // for a moment, through a second connection).
    let other = rusqlite::Connection::open(dir.path().join("usher.db")).unwrap();
    other
        .execute_batch("ALTER TABLE media RENAME TO media_away")
        .unwrap();
    assert!(rights.invalidate_all().is_err());
    assert!(rights.index_is_stale());
    assert_eq!(metrics.rights_index_stale.get(), 1);
    let seg = "/sequel/seg1.ts";
    assert!(rights
        .check("alice", seg, DeviceClass::Ott, T0 + 1, Instant::now())
        .await
        .is_err());
    // Decisions about media the old index knows are cached as usual, and a retry that
    // fails again leaves them be: the store is struggling already.
    let known = "/final/seg1.ts";
    for at in [T0 + 1, T0 + 2] {
        assert!(rights
            .check("alice", known, DeviceClass::Ott, at, Instant::now())
            .await
            .is_ok());
    }
    let hits = count(&metrics, "hit");
    assert!(rights.retry_index().is_err(), "still unreadable");
    assert!(rights.index_is_stale());
    assert!(rights
        .check("alice", known, DeviceClass::Ott, T0 + 3, Instant::now())
        .await
        .is_ok());
    assert_eq!(
        count(&metrics, "hit"),
        hits + 1,
        "the failed retry kept the cache"
    );

    // The retry that runs beside the gateway reads it as soon as the store answers again.
    let rights = Arc::new(rights);
    let retrying = tokio::spawn(retry_stale_index(rights.clone()));
    other
        .execute_batch("ALTER TABLE media_away RENAME TO media")
        .unwrap();
    let deadline = Instant::now() + INDEX_RETRY * 10;
    while rights.index_is_stale() {
        assert!(Instant::now() < deadline, "the index was not read again");
        tokio::time::sleep(INDEX_RETRY / 10).await;
    }
    retrying.abort();
    assert_eq!(metrics.rights_index_stale.get(), 0);
    assert!(rights
        .check("alice", seg, DeviceClass::Ott, T0 + 2, Instant::now())
        .await
        .is_ok());
    assert_eq!(rights.retry_index(), Ok(false), "nothing to retry");
}

/// Grace serves a recent yes through an outage, never past the right's own end.
#[tokio::test]
async fn grace_never_outlasts_the_right() {
    let (_dir, store, _rights, _metrics) = setup(None);
    let config = RightsConfig {
        grace: Duration::from_secs(600),
        ..config()
    };
    let rights = Rights::new(store, Source::Store, &config, Metrics::new()).unwrap();
    let yes = Entitled {
        until: Some(T0 + 100),
        ..Entitled::unlimited("h1", None)
    };
    let memory = rights.recent_yes.as_ref().unwrap();
    memory.insert("k".to_owned(), Arc::new((yes, T0))).await;
    let graced = rights.graced("k", T0 + 50).await.unwrap();
    assert_eq!(graced.until, Some(T0 + 100));
    assert!(
        rights.graced("k", T0 + 100).await.is_none(),
        "the right has ended, whatever the grace left"
    );

    // The purchases it may fall back to: an ended one left out, an unplayed rental
    // starting no first play and ending with the grace.
    let fallbacks = Entitled {
        others: Some(
            vec![
                Entitled {
                    until: Some(T0 + 40),
                    ..Entitled::unlimited("ended", None)
                },
                Entitled {
                    first_play: Some(decide::FirstPlay {
                        seconds: 48 * 3600,
                        bound: None,
                    }),
                    until: Some(T0 + 48 * 3600),
                    ..Entitled::unlimited("rental", None)
                },
            ]
            .into(),
        ),
        ..Entitled::unlimited("h2", None)
    };
    memory
        .insert("f".to_owned(), Arc::new((fallbacks, T0)))
        .await;
    let graced = rights.graced("f", T0 + 50).await.unwrap();
    let others: Vec<_> = graced
        .others
        .iter()
        .flat_map(|o| o.iter())
        .map(|e| (&*e.purchase, e.first_play.is_some(), e.until))
        .collect();
    assert_eq!(others, [("rental", false, Some(T0 + 600))]);
}
